import Foundation
import VouchAuthority
import VouchCrypto

/// What `vouch ca admin-cert` signs with: the active intermediate from the database, its key
/// where its `keyRef` says, and the chain servers send with their leaves (the intermediate, then
/// its cross certificate during a root rollover).
struct AdminCertificateIssuer {
    let record: IssuerRecord
    let signer: CertificateSigner
    let chainPEM: String

    init(context: IssuerCommandContext) async throws {
        let snapshot = try await context.snapshot()
        guard let active = snapshot.activeIntermediate else { throw CLIError("the database names no active intermediate") }
        record = active
        signer = try IssuerKeys.load(active, keys: context.keyAccess)
        let cross = snapshot.issuers.filter { $0.kind == .cross && $0.subjectID == active.id && $0.state == .active }
        chainPEM = try ([active] + cross).map { try X509Certificate(der: $0.der).pem }.joined()
    }

    /// The certificate in `path` when it is `spiffeID`'s (a renewal), nil when there is none;
    /// another ID's is refused: one directory holds one admin identity.
    static func previous(at path: String, spiffeID: String) throws -> X509Certificate? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let text = try OperatorFile.text(path, what: "--out file", limit: 1 << 20)
        guard let held = try? X509Certificate(pem: text) else {
            throw CLIError("\(path) exists and holds no certificate: refusing to overwrite it")
        }
        guard held.spiffeID == spiffeID else {
            throw CLIError("\(path) holds the certificate of \(held.spiffeID ?? "another identity"), not \(spiffeID): choose another --out")
        }
        return held
    }
}
