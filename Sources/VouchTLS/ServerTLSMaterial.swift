import Foundation

/// What a Vouch TLS listener presents and whom it trusts, as PEM text. `RotatingServerTLS`
/// reads it afresh on every `reload()`.
public struct ServerTLSMaterial: Sendable {
    /// The listener's certificate first, then the intermediates it sends.
    public var certificateChainPEM: String
    public var privateKeyPEM: String
    /// The roots a client certificate must chain to.
    public var rootsPEM: String
    /// Intermediates a client may leave out of the chain it sends.
    public var intermediatesPEM: String

    public init(certificateChainPEM: String, privateKeyPEM: String, rootsPEM: String, intermediatesPEM: String) {
        self.certificateChainPEM = certificateChainPEM
        self.privateKeyPEM = privateKeyPEM
        self.rootsPEM = rootsPEM
        self.intermediatesPEM = intermediatesPEM
    }

    /// Reads the certificate chain, key and roots from PEM files.
    public init(certificateChainFile: String, privateKeyFile: String, rootsFile: String, intermediatesPEM: String) throws {
        self.init(certificateChainPEM: try readPEMFile(certificateChainFile), privateKeyPEM: try readPEMFile(privateKeyFile),
                  rootsPEM: try readPEMFile(rootsFile), intermediatesPEM: intermediatesPEM)
    }
}

/// The text of a PEM file; a missing or unreadable file is a `TLSMaterialError` naming it.
func readPEMFile(_ path: String) throws -> String {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw TLSMaterialError("cannot read \(path)")
    }
    return text
}
