import Foundation
import VouchCrypto

/// `vouch ca intermediate revoke`: an intermediate whose key is compromised (or that is no longer
/// wanted) is listed in its root's CRL, which only the root's offline key signs. Relying parties
/// that check the whole chain (nginx, HAProxy, PostgreSQL) then refuse its leaves at depth 1;
/// Vouch retires it at once: out of the listener pools and the trust bundle, no more CRL or OCSP.
extension IssuerOperations {
    /// Reasons an operator may give (RFC 5280).
    public static let intermediateRevocationReasons: [RevocationReason] = [.keyCompromise, .cessationOfOperation, .superseded]

    public struct IntermediateRevocation: Sendable {
        public let intermediate: IssuerRecord
        public let root: IssuerRecord
        public let crl: IssuerChange.RootCRLUpdate
        /// Its live certificates: they can no longer renew (their chain is refused) and need new tokens.
        public let liveCertificates: Int
        public let generation: Int64
    }

    /// Revokes intermediate `serial` with its root's key, in one generation-checked change that
    /// retires it and re-signs the root's CRL. Refused for the signing intermediate (rotate first),
    /// a pending one, one revoked already, anything but an intermediate, and a key not its root's.
    public func revokeIntermediate(serial: String, reason: RevocationReason, rootKey: PrivateKey, rootKeyPath: String) async throws -> IntermediateRevocation {
        guard Self.intermediateRevocationReasons.contains(reason) else {
            throw AuthorityError(.invalidArgument, "--reason \(reason) is not one of "
                + Self.intermediateRevocationReasons.map(\.description).joined(separator: ", "))
        }
        let snapshot = try await store.issuers()
        guard let canonical = SerialNumber.canonicalHex(serial), let target = snapshot.issuer(serial: canonical) else {
            throw AuthorityError(.notFound, "no issuer with serial \(AuthorityError.quoted(serial))")
        }
        guard target.kind == .intermediate else {
            throw AuthorityError(.failedPrecondition, "issuer \(target.serial) is a \(target.kind.rawValue) certificate, not an intermediate")
        }
        guard !target.isRevoked else { throw AuthorityError(.failedPrecondition, "intermediate \(target.serial) is revoked already") }
        switch target.state {
        case .active:
            throw AuthorityError(.failedPrecondition, "rotate first: intermediate \(target.serial) signs now "
                + "(vouch ca intermediate rotate makes another sign, then revoke this one)")
        case .pending:
            throw AuthorityError(.failedPrecondition, "intermediate \(target.serial) is pending in a root rollover: "
                + "it signs nothing yet; finish the rollover first")
        case .retiring, .retired:
            break
        }
        if let cross = snapshot.issuers.first(where: { $0.kind == .cross && $0.subjectID == target.id && $0.state != .retired }) {
            throw AuthorityError(.failedPrecondition, "intermediate \(target.serial) is cross-certified by \(cross.serial): finish the rollover first")
        }
        guard let root = target.parentID.flatMap(snapshot.issuer(id:)), root.kind == .root else {
            throw AuthorityError(.failedPrecondition, "intermediate \(target.serial) has no stored root")
        }
        guard (try? X509Certificate(der: root.der))?.matches(rootKey) == true else {
            throw AuthorityError(.failedPrecondition, "--root-key \(rootKeyPath) is not the key of root \(root.serial), which signed \(target.serial)")
        }
        let live = try await usage(of: target, in: snapshot).live
        var after = snapshot.issuers
        if let index = after.firstIndex(where: { $0.id == target.id }) {
            (after[index].state, after[index].revokedAt, after[index].revocationReason) = (.retired, now, reason.rawValue)
        }
        let crl = try RootCRL.update(root: root, key: rootKey, issuers: after, now: now, lifetime: rootCRLLifetime)
        let revoked = RootCRL.entries(rootID: root.id, issuers: after).count
        let change = IssuerChange(updates: target.state == .retired ? [] : [.init(id: target.id, state: .retired)],
                                  rootCRLs: [crl], revocations: [.init(id: target.id, reason: reason.rawValue, at: now)])
        let audit = [
            AuditEntry(time: now, actor: "local", action: .issuerRevoke, subject: target.serial, peer: "local",
                       detail: "intermediate revoked by root \(root.serial) (\(reason)); \(live) live certificates need new tokens (ca intermediate revoke)"),
            AuditEntry(time: now, actor: "local", action: .issuerCRL, subject: root.serial, peer: "local",
                       detail: "root CRL number \(crl.number), \(revoked) revoked, next update \(iso8601(crl.nextUpdate)) (ca intermediate revoke)"),
        ]
        let generation = try await store.changeIssuers(change, expectedGeneration: snapshot.generation, audit: audit)
        let stored = try await store.issuers().issuer(id: target.id) ?? target
        return IntermediateRevocation(intermediate: stored, root: root, crl: crl, liveCertificates: live, generation: generation)
    }
}
