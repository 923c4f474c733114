import Foundation
import VouchCrypto

/// The steps of `vouch ca intermediate rotate` and `vouch ca root prepare|activate|retire`
/// against a store: each reads the issuers, checks the step is allowed, and records it in one
/// `changeIssuers` with its audit rows. Files are the command's: it says where a new key goes
/// (`KeyPlacement`) before anything is recorded.
public struct IssuerOperations: Sendable {
    /// Where a new key is kept, as recorded in `IssuerRecord.keyRef` / `keyPEM`.
    public struct KeyPlacement: Sendable {
        public var keyRef: String
        public var keyPEM: String?

        public init(keyRef: String, keyPEM: String? = nil) {
            self.keyRef = keyRef
            self.keyPEM = keyPEM
        }

        /// A key that stays in its PKCS#11 token: the row holds its URI and no key material.
        public static func token(_ reference: TokenKeyReference) -> KeyPlacement {
            KeyPlacement(keyRef: reference.description)
        }
    }

    public let store: any AuthorityStore
    public let now: Date
    /// Admin SPIFFE IDs besides those under `/vouch/`: the CA's own certificates, counted apart from agents'.
    public var adminIDs: Set<String>

    /// The nextUpdate of the root CRLs the steps sign, from `now`.
    public var rootCRLLifetime: TimeInterval = RootCRL.defaultLifetime

    public init(store: any AuthorityStore, now: Date, adminIDs: Set<String> = []) {
        self.store = store
        self.now = now
        self.adminIDs = adminIDs
    }

    /// Rotating needs the root to outlive twice the longest lifetime the server grants by default
    /// (`--max-ttl 168h`): a new intermediate that soon dies with its root buys nothing.
    public static let minimumRootLifeForRotation: TimeInterval = 2 * 7 * 24 * 3600

    public struct Rotation: Sendable {
        public let new: IssuerRecord
        public let previous: IssuerRecord
        public let generation: Int64
        /// Retiring intermediates whose every certificate has expired, retired by this change.
        public let retired: [IssuerRecord]
    }

    /// A new intermediate under the active root signs from now on; the previous one is retiring.
    /// `makeKey` makes the new key (in a token, or by OpenSSL for `placeKey` to store).
    public func rotateIntermediate(rootKey: PrivateKey, rootKeyPath: String, makeKey: IssuerLifecycle.MakeKey = IssuerLifecycle.opensslKey,
                                   placeKey: (IssuerLifecycle.NewIssuer) throws -> KeyPlacement) async throws -> Rotation {
        let snapshot = try await store.issuers()
        let (root, previous) = try activePair(snapshot)
        try refuseRolloverInProgress(snapshot)
        let rootCertificate = try X509Certificate(der: root.der)
        let signer = try IssuerLifecycle.rootSigner(rootCertificate, key: rootKey, keyPath: rootKeyPath)
        guard root.notAfter.timeIntervalSince(now) >= Self.minimumRootLifeForRotation else {
            throw AuthorityError(.failedPrecondition, "the root expires at \(iso8601(root.notAfter)): roll the root over instead")
        }
        let made = try IssuerLifecycle.intermediate(under: signer, now: now, takenNames: try names(snapshot), makeKey: makeKey)
        let placement = try placeKey(made)
        let record = IssuerRecord(kind: .intermediate, state: .active, serial: made.certificate.serialHex, der: made.certificate.der,
                                  notBefore: made.certificate.notBefore, notAfter: made.certificate.notAfter,
                                  keyRef: placement.keyRef, keyPEM: placement.keyPEM, createdAt: now)
        let idle = try await idleRetiringIntermediates(snapshot).filter { $0.id != previous.id }
        // The operator holds the root key for this step: the root's CRL gets a fresh nextUpdate.
        let change = IssuerChange(
            inserts: [IssuerChange.NewIssuer(record, parent: .id(root.id))],
            updates: [IssuerChange.StateUpdate(id: previous.id, state: .retiring)] + idle.map { .init(id: $0.id, state: .retired) },
            rootCRLs: [try RootCRL.update(root: root, key: rootKey, issuers: snapshot.issuers, now: now, lifetime: rootCRLLifetime)])
        let audit = change.rootCRLs.map { entry(.issuerCRL, root.serial, "root CRL number \($0.number) (ca intermediate rotate)") }
            + [entry(.issuerCreate, record.serial, "intermediate under root \(root.serial) (ca intermediate rotate)"),
                     entry(.issuerActivate, record.serial, "intermediate (ca intermediate rotate)"),
                     entry(.issuerRetire, previous.serial, "intermediate now retiring (ca intermediate rotate)")]
            + idle.map { entry(.issuerRetire, $0.serial, "retiring intermediate with no unexpired certificate retired") }
        let generation = try await store.changeIssuers(change, expectedGeneration: snapshot.generation, audit: audit)
        let stored = try await store.issuers()
        return Rotation(new: stored.issuer(serial: record.serial) ?? record, previous: previous, generation: generation, retired: idle)
    }

    public struct Preparation: Sendable {
        public let made: IssuerLifecycle.PreparedRoot
        public let root: IssuerRecord
        public let intermediate: IssuerRecord
        public let cross: IssuerRecord
        public let endorsement: IssuerRecord
        public let generation: Int64
    }

    /// A new root, its intermediate, the cross certificate and the endorsement, all pending.
    public func prepareRoot(rootKey: PrivateKey, rootKeyPath: String, makeKey: IssuerLifecycle.MakeKey = IssuerLifecycle.opensslKey,
                            placeRootKey: (IssuerLifecycle.NewIssuer) throws -> Void,
                            placeIntermediateKey: (IssuerLifecycle.NewIssuer) throws -> KeyPlacement) async throws -> Preparation {
        let snapshot = try await store.issuers()
        let (oldRoot, _) = try activePair(snapshot)
        try refuseRolloverInProgress(snapshot)
        let signer = try IssuerLifecycle.rootSigner(try X509Certificate(der: oldRoot.der), key: rootKey, keyPath: rootKeyPath)
        let made = try IssuerLifecycle.prepareRoot(oldRoot: signer, now: now, takenNames: try names(snapshot), makeKey: makeKey)
        try placeRootKey(made.root)
        let placement = try placeIntermediateKey(made.intermediate)
        func pending(_ kind: IssuerKind, _ certificate: X509Certificate, _ key: KeyPlacement) -> IssuerRecord {
            IssuerRecord(kind: kind, state: .pending, serial: certificate.serialHex, der: certificate.der, notBefore: certificate.notBefore,
                         notAfter: certificate.notAfter, keyRef: key.keyRef, keyPEM: key.keyPEM, createdAt: now)
        }
        let offline = KeyPlacement(keyRef: IssuerRecord.offlineKeyRef)
        let records = [pending(.root, made.root.certificate, offline), pending(.intermediate, made.intermediate.certificate, placement),
                       pending(.cross, made.cross, offline), pending(.endorsement, made.endorsement, offline)]
        // The old root's CRL re-signed, and the new root's first one signed while its key is in
        // hand: clients checking whole chains need it from the moment they trust the new root.
        let newRootCRL = try RootCRL.sign(root: made.root.certificate, key: made.root.key, entries: [], number: 1, now: now,
                                          lifetime: rootCRLLifetime)
        let change = IssuerChange(inserts: [
            IssuerChange.NewIssuer(records[0]),
            IssuerChange.NewIssuer(records[1], parent: .inserted(0)),
            IssuerChange.NewIssuer(records[2], parent: .id(oldRoot.id), subject: .inserted(1)),
            IssuerChange.NewIssuer(records[3], parent: .id(oldRoot.id), subject: .inserted(0)),
        ], rootCRLs: [
            try RootCRL.update(root: oldRoot, key: rootKey, issuers: snapshot.issuers, now: now, lifetime: rootCRLLifetime),
            IssuerChange.RootCRLUpdate(root: .inserted(0), der: newRootCRL, number: 1, nextUpdate: now.addingTimeInterval(rootCRLLifetime)),
        ])
        let details = ["new root (ca root prepare)", "intermediate under the new root (ca root prepare)",
                       "the new intermediate cross-signed by root \(oldRoot.serial) (ca root prepare)",
                       "the new root endorsed by root \(oldRoot.serial) (ca root prepare)"]
        let generation = try await store.changeIssuers(change, expectedGeneration: snapshot.generation,
                                                       audit: zip(records, details).map { entry(.issuerCreate, $0.serial, $1) }
                                                           + [entry(.issuerCRL, oldRoot.serial, "root CRL number \(oldRoot.crlNumber + 1) (ca root prepare)"),
                                                              entry(.issuerCRL, records[0].serial, "root CRL number 1 (ca root prepare)")])
        let stored = try await store.issuers()
        let found = records.map { stored.issuer(serial: $0.serial) ?? $0 }
        return Preparation(made: made, root: found[0], intermediate: found[1], cross: found[2], endorsement: found[3], generation: generation)
    }

    public struct RootCRLSigning: Sendable {
        public let root: IssuerRecord
        public let crl: IssuerChange.RootCRLUpdate
        /// Revoked certificates it lists.
        public let revoked: Int
        public let generation: Int64
    }

    /// Signs the next CRL of the root (not retired) whose key `rootKey` is; `vouch ca root crl`
    /// and `ca init`. Refused for a key that is no current root's.
    public func signRootCRL(rootKey: PrivateKey, keyPath: String, by whom: String = "ca root crl") async throws -> RootCRLSigning {
        let snapshot = try await store.issuers()
        guard let root = snapshot.issuers.first(where: { record in
            record.kind == .root && record.state != .retired && (try? X509Certificate(der: record.der))?.matches(rootKey) == true
        }) else {
            throw AuthorityError(.failedPrecondition, "--root-key \(keyPath) is not the key of any current root")
        }
        let update = try RootCRL.update(root: root, key: rootKey, issuers: snapshot.issuers, now: now, lifetime: rootCRLLifetime)
        let revoked = RootCRL.entries(rootID: root.id, issuers: snapshot.issuers).count
        let generation = try await store.changeIssuers(
            IssuerChange(rootCRLs: [update]), expectedGeneration: snapshot.generation,
            audit: [entry(.issuerCRL, root.serial, "root CRL number \(update.number), \(revoked) revoked, next update \(iso8601(update.nextUpdate)) (\(whom))")])
        return RootCRLSigning(root: root, crl: update, revoked: revoked, generation: generation)
    }

    /// The rollover's stage and whether its next step is safe.
    public func status() async throws -> RolloverStatus {
        try await status(of: try await store.issuers())
    }

    func status(of snapshot: IssuerSnapshot) async throws -> RolloverStatus {
        let (stage, old, new) = RolloverStatus.roots(of: snapshot)
        var counts = RolloverCounts()
        if stage != .none, let old, let new {
            counts = try await store.rolloverCounts(rootID: old.id, generation: new.createdGeneration, now: now, adminIDs: adminIDs)
        }
        return RolloverStatus.compute(snapshot, counts: counts)
    }

    public struct Transition: Sendable {
        /// The status that allowed it (or was forced past).
        public let status: RolloverStatus
        public let changed: [IssuerChange.StateUpdate]
        public let generation: Int64
    }

    /// The new root's intermediate signs from now on: the new root, its intermediate, the cross
    /// certificate and the endorsement become active; the old root and its intermediates retiring.
    public func activateRoot(force: Bool) async throws -> Transition {
        let snapshot = try await store.issuers()
        let status = try await status(of: snapshot)
        guard status.stage == .prepared, let old = status.oldRoot, let new = status.newRoot else {
            throw AuthorityError(.failedPrecondition, status.stage == .activated
                ? "root \(status.newRoot?.serial ?? "?") is active already: next is vouch ca root retire"
                : "no root is pending: run vouch ca root prepare first")
        }
        if let refusal = status.activateRefusal, !force { throw AuthorityError(.failedPrecondition, refusal) }
        // Everything `prepare` made: one change, one generation.
        let newSide = snapshot.issuers.filter { $0.state == .pending && $0.createdGeneration == new.createdGeneration }
        let oldSide = snapshot.issuers.filter { ($0.id == old.id || ($0.kind == .intermediate && $0.parentID == old.id)) && $0.state == .active }
        let updates = oldSide.map { IssuerChange.StateUpdate(id: $0.id, state: .retiring) }
            + newSide.map { IssuerChange.StateUpdate(id: $0.id, state: .active) }
        let forced = force && status.activateRefusal != nil ? " (forced: \(status.next.reason))" : ""
        let audit = newSide.map { entry(.issuerActivate, $0.serial, "\($0.kind.rawValue) (ca root activate)\(forced)") }
            + oldSide.map { entry(.issuerRetire, $0.serial, "\($0.kind.rawValue) now retiring (ca root activate)") }
        let generation = try await store.changeIssuers(IssuerChange(updates: updates), expectedGeneration: snapshot.generation, audit: audit)
        return Transition(status: status, changed: updates, generation: generation)
    }

    /// The old root, its intermediates and the cross certificates it signed leave the bundle and
    /// the pools. The endorsement stays: a restarting agent proves the new root with it.
    public func retireRoot(force: Bool) async throws -> Transition {
        let snapshot = try await store.issuers()
        let status = try await status(of: snapshot)
        guard status.stage == .activated, let old = status.oldRoot else {
            throw AuthorityError(.failedPrecondition, status.stage == .prepared
                ? "root \(status.newRoot?.serial ?? "?") is pending: activate it first (vouch ca root activate)"
                : "no root is retiring: nothing to retire")
        }
        if let refusal = status.retireRefusal, !force { throw AuthorityError(.failedPrecondition, refusal) }
        let leaving = snapshot.issuers.filter { issuer in
            issuer.state != .retired && (issuer.id == old.id
                || (issuer.parentID == old.id && (issuer.kind == .intermediate || issuer.kind == .cross)))
        }
        let updates = leaving.map { IssuerChange.StateUpdate(id: $0.id, state: .retired) }
        let forced = force && status.retireRefusal != nil ? " (forced: \(status.next.reason))" : ""
        let audit = leaving.map { entry(.issuerRetire, $0.serial, "\($0.kind.rawValue) retired (ca root retire)\(forced)") }
        let generation = try await store.changeIssuers(IssuerChange(updates: updates), expectedGeneration: snapshot.generation, audit: audit)
        return Transition(status: status, changed: updates, generation: generation)
    }

    /// What an intermediate still has out there: live certificates (unexpired, unrevoked, not
    /// superseded) and any unexpired one (revoked ones too: their CRL must stay published).
    public struct Usage: Sendable, Equatable {
        public var live = 0
        public var unexpired = 0
        public var latestNotAfter: Date?

        public init(live: Int = 0, unexpired: Int = 0, latestNotAfter: Date? = nil) {
            (self.live, self.unexpired, self.latestNotAfter) = (live, unexpired, latestNotAfter)
        }
    }

    /// Reads every unexpired certificate once, page by page (a CLI step, not a request path).
    public func usage(of issuer: IssuerRecord, in snapshot: IssuerSnapshot) async throws -> Usage {
        let initial = snapshot.initialIntermediate?.id
        var usage = Usage()
        for status in [CertificateStatus.active, .revoked] {
            var before: Int64?
            while true {
                let page = try await store.listCertificates(CertificateQuery(status: status, now: now, limit: 1000, beforeID: before))
                for certificate in page where (certificate.issuerID ?? initial) == issuer.id && certificate.notAfter > now {
                    usage.unexpired += 1
                    if status == .active && certificate.supersededBy == nil { usage.live += 1 }
                    usage.latestNotAfter = max(usage.latestNotAfter ?? certificate.notAfter, certificate.notAfter)
                }
                guard page.count == 1000, let last = page.last?.id else { break }
                before = last
            }
        }
        return usage
    }

    /// Live admin certificates (IDs in `adminIDs`) that expire within `window`: nothing renews
    /// them but `vouch ca admin-cert`. Latest notAfter last.
    public func expiringAdminCertificates(within window: TimeInterval = 30 * 86400) async throws -> [RolloverCertificate] {
        var found: [RolloverCertificate] = []
        var before: Int64?
        while true {
            let page = try await store.listCertificates(CertificateQuery(status: .active, expiringWithin: window, now: now,
                                                                         limit: 1000, beforeID: before))
            for certificate in page where adminIDs.contains(certificate.spiffeID) && certificate.supersededBy == nil {
                found.append(RolloverCertificate(serial: certificate.serial, spiffeID: certificate.spiffeID, notAfter: certificate.notAfter))
            }
            guard page.count == 1000, let last = page.last?.id else { break }
            before = last
        }
        return found.sorted { ($0.notAfter, $0.serial) < ($1.notAfter, $1.serial) }
    }

    /// Retiring intermediates with no unexpired certificate left: nothing depends on them any more.
    public func idleRetiringIntermediates(_ snapshot: IssuerSnapshot) async throws -> [IssuerRecord] {
        var idle: [IssuerRecord] = []
        for issuer in snapshot.issuers where issuer.kind == .intermediate && issuer.state == .retiring {
            if try await usage(of: issuer, in: snapshot).unexpired == 0 { idle.append(issuer) }
        }
        return idle
    }

    /// Retires every retiring intermediate with no unexpired certificate left, in one
    /// generation-checked change (what `rotate` folds into its own). Returns those retired: none
    /// when there is nothing to do, or when the issuers changed meanwhile (the next pass tries again).
    public func retireIdleIntermediates(by whom: String) async throws -> [IssuerRecord] {
        let snapshot = try await store.issuers()
        let idle = try await idleRetiringIntermediates(snapshot)
        guard !idle.isEmpty else { return [] }
        let change = IssuerChange(updates: idle.map { .init(id: $0.id, state: .retired) })
        let audit = idle.map { entry(.issuerRetire, $0.serial, "retiring intermediate with no unexpired certificate retired (\(whom))") }
        do {
            _ = try await store.changeIssuers(change, expectedGeneration: snapshot.generation, audit: audit)
        } catch let error as AuthorityError where error.message == IssuerChange.staleGenerationMessage {
            return []
        }
        return idle
    }

    /// Why an admin certificate needs `vouch ca admin-cert`: nothing else renews it.
    public struct AdminCertificateWarning: Sendable, Equatable {
        public enum Reason: Sendable, Equatable {
            /// It expires within the window.
            case expiring
            /// Its intermediate chains to this root, which is retiring: it fails once the root is retired.
            case retiringRoot(serial: String)
        }
        public let certificate: RolloverCertificate
        public let reason: Reason
    }

    /// Live admin certificates (IDs in `adminIDs`) that expire within `window` or chain to a
    /// retiring root; soonest notAfter first.
    public func adminCertificateWarnings(within window: TimeInterval = 30 * 86400) async throws -> [AdminCertificateWarning] {
        let snapshot = try await store.issuers()
        let initial = snapshot.initialIntermediate?.id
        var warnings: [AdminCertificateWarning] = []
        for id in adminIDs.sorted() {
            var before: Int64?
            while true {
                let page = try await store.listCertificates(CertificateQuery(identityGlob: id, status: .active, now: now,
                                                                             limit: 1000, beforeID: before))
                for record in page where record.spiffeID == id && record.supersededBy == nil && record.notAfter > now {
                    let certificate = RolloverCertificate(serial: record.serial, spiffeID: record.spiffeID, notAfter: record.notAfter)
                    let root = (record.issuerID ?? initial).flatMap { snapshot.issuer(id: $0) }.flatMap { $0.parentID }
                        .flatMap { snapshot.issuer(id: $0) }
                    if let root, root.state == .retiring {
                        warnings.append(AdminCertificateWarning(certificate: certificate, reason: .retiringRoot(serial: root.serial)))
                    } else if record.notAfter <= now.addingTimeInterval(window) {
                        warnings.append(AdminCertificateWarning(certificate: certificate, reason: .expiring))
                    }
                }
                guard page.count == 1000, let last = page.last?.id else { break }
                before = last
            }
        }
        return warnings.sorted { ($0.certificate.notAfter, $0.certificate.serial) < ($1.certificate.notAfter, $1.certificate.serial) }
    }

    private func activePair(_ snapshot: IssuerSnapshot) throws -> (root: IssuerRecord, intermediate: IssuerRecord) {
        guard let root = snapshot.activeRoot, let intermediate = snapshot.activeIntermediate else {
            throw AuthorityError(.failedPrecondition, "the database holds no active root and intermediate")
        }
        return (root, intermediate)
    }

    private func refuseRolloverInProgress(_ snapshot: IssuerSnapshot) throws {
        let (stage, old, new) = RolloverStatus.roots(of: snapshot)
        switch stage {
        case .none: return
        case .prepared:
            throw AuthorityError(.failedPrecondition, "root \(new?.serial ?? "?") is pending: finish the rollover first")
        case .activated:
            throw AuthorityError(.failedPrecondition, "root \(old?.serial ?? "?") is retiring: finish the rollover first")
        }
    }

    private func names(_ snapshot: IssuerSnapshot) throws -> Set<String> {
        Set(try snapshot.issuers.compactMap { try X509Certificate(der: $0.der).commonName })
    }

    private func entry(_ action: AuditAction, _ serial: String, _ detail: String) -> AuditEntry {
        AuditEntry(time: now, actor: "local", action: action, subject: serial, peer: "local", detail: detail)
    }
}
