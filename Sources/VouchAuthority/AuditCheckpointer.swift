import Foundation
import VouchCrypto

/// Signs checkpoints of the audit log's head with the signing intermediate's key and keeps them
/// in the store. Before signing it checks that the rows since the last checkpoint continue
/// the chain, so it never puts the CA's signature on a head it cannot link to its past.
public final class AuditCheckpointer: Sendable {
    let store: any AuthorityStore
    /// The signer of the next checkpoint.
    let signer: @Sendable () -> CertificateSigner
    /// The certificate of the intermediate with this serial, to check an earlier checkpoint.
    let intermediate: @Sendable (String) -> X509Certificate?
    let clock: @Sendable () -> Date

    /// Signs with one fixed key.
    public init(store: any AuthorityStore, signer: CertificateSigner, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.signer = { signer }
        self.intermediate = { $0 == signer.certificate.serialHex ? signer.certificate : nil }
        self.clock = clock
    }

    /// Signs with the intermediate that signs certificates now, and accepts an earlier
    /// checkpoint signed by any of the CA's intermediates (before a rotation, the previous one).
    public init(store: any AuthorityStore, authority: CertificateAuthority, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.signer = { authority.issuerSet.active.signer }
        self.intermediate = { serial in
            let issuers = authority.issuerSet
            return issuers.record(serial: serial).flatMap { $0.kind == .intermediate ? issuers.certificate($0) : nil }
        }
        self.clock = clock
    }

    /// Signs and stores a checkpoint of the current head if it moved since the latest
    /// stored checkpoint; nil when nothing changed.
    public func checkpointIfMoved() async throws -> AuditCheckpoint? {
        let head = try await currentHead()
        if let latest = try await store.latestAuditCheckpoint(), latest.rowID == head.id, latest.hash == head.hash {
            return nil
        }
        return try await checkpoint()
    }

    /// Signs and stores a checkpoint of the current head, after `verify()` found the log intact.
    public func checkpoint() async throws -> AuditCheckpoint {
        let head = try await currentHead()
        if let broken = try await verify(head: head).broken {
            throw AuthorityError(.failedPrecondition, "not signing an audit checkpoint: \(broken.problem)")
        }
        let signer = signer()
        let checkpoint: AuditCheckpoint
        do {
            checkpoint = try AuditCheckpoint.sign(rowID: head.id, hash: head.hash, time: clock(), with: signer)
        } catch let error as CryptoError where error.kind == .tokenUnavailable {
            // A failed PKCS#11 token: unavailable (GetAuditCheckpoint), and the periodic checkpoint
            // waits for its next tick; the next one covers this head too.
            throw AuthorityError(signing: error)
        }
        try await store.appendAuditCheckpoint(checkpoint)
        return checkpoint
    }

    /// The latest stored checkpoint, if any.
    public func latest() async throws -> AuditCheckpoint? {
        try await store.latestAuditCheckpoint()
    }

    private func currentHead() async throws -> (id: Int64, hash: [UInt8]) {
        guard let head = try await store.auditHead() else {
            throw AuthorityError(.failedPrecondition, "not signing an audit checkpoint: the audit_head record is missing")
        }
        return head
    }
}
