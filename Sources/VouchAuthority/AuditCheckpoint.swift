import Foundation
import VouchCrypto

/// A signed statement "the audit log had row `rowID` with chain hash `hash` at `time`",
/// signed with the intermediate key, which lives in the CA directory and never in the
/// database. Whoever can write the database but does not hold that key cannot make one,
/// so a rewritten or rolled-back log no longer matches the checkpoints taken before.
///
/// Its text form is one JSON line that users can save and later pass to
/// `vouch audit verify --checkpoint FILE`:
/// `{"vouch_audit_checkpoint":1,"row":42,"hash":"<hex>","time":"2026-01-01T00:00:00Z","signer":"<serial>","signature":"<base64>"}`
public struct AuditCheckpoint: Equatable, Sendable {
    public var rowID: Int64
    /// The chain hash of row `rowID` (the genesis hash for row 0, an empty log).
    public var hash: [UInt8]
    /// Whole seconds, so the text form round-trips exactly.
    public var time: Date
    /// Serial (hex) of the certificate whose key signed it: the CA's intermediate.
    public var signer: String
    public var signature: [UInt8]

    public init(rowID: Int64, hash: [UInt8], time: Date, signer: String, signature: [UInt8]) {
        self.rowID = rowID
        self.hash = hash
        self.time = Date(timeIntervalSince1970: time.timeIntervalSince1970.rounded(.down))
        self.signer = signer
        self.signature = signature
    }

    /// Signs the head `(rowID, hash)` at `time` with the CA signer's key.
    public static func sign(rowID: Int64, hash: [UInt8], time: Date, with signer: CertificateSigner) throws -> AuditCheckpoint {
        var checkpoint = AuditCheckpoint(rowID: rowID, hash: hash, time: time, signer: signer.certificate.serialHex, signature: [])
        checkpoint.signature = try signer.signMessage(checkpoint.signedMessage)
        return checkpoint
    }

    /// The exact bytes the signature covers: a fixed, versioned layout of every other field.
    public var signedMessage: [UInt8] {
        Array("vouch audit checkpoint v1\nrow=\(rowID)\nhash=\(hash.hex)\ntime=\(Int64(time.timeIntervalSince1970))\nsigner=\(signer)\n".utf8)
    }

    /// Why this checkpoint is not a valid statement of `certificate`'s key, or nil if it is.
    public func signatureProblem(certificate: X509Certificate) -> String? {
        if signer != certificate.serialHex {
            return "it is signed by certificate \(signer), not by the intermediate \(certificate.serialHex)"
        }
        if !certificate.verifiesMessage(signedMessage, signature: signature) {
            return "its signature does not verify with the intermediate certificate (forged or edited)"
        }
        return nil
    }

    // MARK: Text form

    private struct Line: Codable {
        var vouch_audit_checkpoint: Int
        var row: Int64
        var hash: String
        var time: String
        var signer: String
        var signature: String
    }

    /// One line of JSON with a fixed key order (no trailing newline).
    public var text: String {
        "{\"vouch_audit_checkpoint\":1,\"row\":\(rowID),\"hash\":\"\(hash.hex)\",\"time\":\"\(time.formatted(.iso8601))\","
            + "\"signer\":\"\(signer)\",\"signature\":\"\(Data(signature).base64EncodedString())\"}"
    }

    /// Parses the text form (surrounding whitespace allowed, e.g. a saved file's newline).
    public init(text: String) throws {
        let malformed = AuthorityError(.invalidArgument, "not a Vouch audit checkpoint (expected one JSON line from `vouch audit checkpoint`)")
        guard let line = try? JSONDecoder().decode(Line.self, from: Data(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8)),
              line.vouch_audit_checkpoint == 1,
              let hash = [UInt8](hex: line.hash), hash.count == 32,
              let time = try? Date(line.time, strategy: .iso8601),
              let signature = Data(base64Encoded: line.signature)
        else { throw malformed }
        self.init(rowID: line.row, hash: hash, time: time, signer: line.signer, signature: Array(signature))
    }
}

extension [UInt8] {
    /// Lowercase hex.
    public var hex: String { map { String(format: "%02x", $0) }.joined() }

    /// Bytes from an even-length hex string; nil if it is not one.
    public init?(hex: String) {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let byte = UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16) else { return nil }
            bytes.append(byte)
            index += 2
        }
        self = bytes
    }
}
