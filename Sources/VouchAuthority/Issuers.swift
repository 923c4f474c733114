import Foundation

/// What an issuer certificate is for.
public enum IssuerKind: String, Sendable, CaseIterable, Codable {
    /// A self-signed trust anchor.
    case root
    /// Signs leaves; its parent is a root.
    case intermediate
    /// Another intermediate's subject and key signed by a different root, sent in chains after it
    /// so verifiers that hold only that root still build a path.
    case cross
    /// A new root's subject and key signed by the old root: the agents' proof that the old root
    /// vouches for the new one. Never sent in chains.
    case endorsement
}

/// Where an issuer stands in its life.
public enum IssuerState: String, Sendable, CaseIterable, Codable {
    /// In the trust bundle, not signing yet.
    case pending
    /// Signing (at most one root and one intermediate at a time).
    case active
    /// Still trusted, serves its CRL and OCSP, its leaves renew (from the active issuer); signs no new leaf.
    case retiring
    /// Out of the bundle and the listener pools.
    case retired
}

/// One issuer certificate as the store keeps it.
public struct IssuerRecord: Sendable, Equatable {
    /// Storage row id; 0 for a record not stored yet (see `IssuerChange.NewIssuer`).
    public var id: Int64
    public var kind: IssuerKind
    public var state: IssuerState
    /// The root that signed it; nil for a root.
    public var parentID: Int64?
    /// For a cross certificate or an endorsement: the issuer whose subject and key it certifies.
    public var subjectID: Int64?
    /// Lowercase hex serial, as certificates' serials.
    public var serial: String
    public var der: [UInt8]
    public var notBefore: Date
    public var notAfter: Date
    /// Where the private key is: `initial` (the CA directory's intermediate_key.pem), `offline`
    /// (a root's key, not held by the CA), `file:<path relative to the CA directory>`, or `database`
    /// (`keyPEM`, encrypted with the CA passphrase). Cross certificates and endorsements reuse
    /// their subject's key and record `offline`.
    public var keyRef: String
    /// The encrypted PKCS#8 key when `keyRef` is `database`.
    public var keyPEM: String?
    /// The last CRL number this issuer used (0: none yet).
    public var crlNumber: Int64
    /// The issuer generation whose change created it.
    public var createdGeneration: Int64
    public var createdAt: Date
    public var changedAt: Date
    /// A root's CRL (RootCRL.swift), signed offline with its key: DER, numbered `crlNumber`.
    public var crlDER: [UInt8]?
    /// That CRL's nextUpdate.
    public var crlNextUpdate: Date?
    /// When an intermediate or cross certificate was revoked (`vouch ca intermediate revoke`): it is
    /// then also `retired`, and listed in its root's CRL.
    public var revokedAt: Date?
    /// The RFC 5280 CRLReason code of that revocation.
    public var revocationReason: Int?

    public init(id: Int64 = 0, kind: IssuerKind, state: IssuerState, parentID: Int64? = nil, subjectID: Int64? = nil,
                serial: String, der: [UInt8], notBefore: Date, notAfter: Date, keyRef: String, keyPEM: String? = nil,
                crlNumber: Int64 = 0, createdGeneration: Int64 = 0, createdAt: Date, changedAt: Date? = nil,
                crlDER: [UInt8]? = nil, crlNextUpdate: Date? = nil, revokedAt: Date? = nil, revocationReason: Int? = nil) {
        self.id = id
        self.kind = kind
        self.state = state
        self.parentID = parentID
        self.subjectID = subjectID
        self.serial = serial
        self.der = der
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.keyRef = keyRef
        self.keyPEM = keyPEM
        self.crlNumber = crlNumber
        self.createdGeneration = createdGeneration
        self.createdAt = createdAt
        self.changedAt = changedAt ?? createdAt
        self.crlDER = crlDER
        self.crlNextUpdate = crlNextUpdate
        self.revokedAt = revokedAt
        self.revocationReason = revocationReason
    }

    /// Revoked by its root (`revokedAt` set).
    public var isRevoked: Bool { revokedAt != nil }

    /// The `keyRef` of the adopted initial intermediate.
    public static let initialKeyRef = "initial"
    /// The `keyRef` of a key the CA does not hold (roots, cross certificates, endorsements).
    public static let offlineKeyRef = "offline"
    /// The `keyRef` of a key stored encrypted in `keyPEM`.
    public static let databaseKeyRef = "database"
}

/// Every issuer, at one generation (which grows by one with each `changeIssuers`).
public struct IssuerSnapshot: Sendable, Equatable {
    public var generation: Int64
    /// Ordered by id (oldest first).
    public var issuers: [IssuerRecord]

    public init(generation: Int64, issuers: [IssuerRecord]) {
        self.generation = generation
        self.issuers = issuers
    }

    public func issuer(id: Int64) -> IssuerRecord? { issuers.first { $0.id == id } }
    public func issuer(serial: String) -> IssuerRecord? { issuers.first { $0.serial == serial } }
    /// The root and the intermediate that sign now.
    public var activeRoot: IssuerRecord? { issuers.first { $0.kind == .root && $0.state == .active } }
    public var activeIntermediate: IssuerRecord? { issuers.first { $0.kind == .intermediate && $0.state == .active } }
    /// The intermediate adopted from the CA directory: certificates with no recorded issuer are its.
    public var initialIntermediate: IssuerRecord? { issuers.first { $0.kind == .intermediate } }
}

/// One change of the issuers, applied by `AuthorityStore.changeIssuers` in one transaction:
/// first the state updates (states other than active before activations, so at no point are
/// two roots or two intermediates active), then the inserts in order.
public struct IssuerChange: Sendable, Equatable {
    /// An issuer named before the change: a stored row, or a row this change inserts.
    public enum Reference: Sendable, Equatable, Hashable {
        /// A stored issuer's id.
        case id(Int64)
        /// The issuer at this index of `inserts` (its id is not known yet).
        case inserted(Int)
    }

    /// A row to insert. `record.id`, `parentID`, `subjectID`, `crlNumber` and `createdGeneration`
    /// are ignored: the store sets them (the parent and subject from the references; the
    /// generation to the one this change makes; the CRL number per `changeIssuers`' rule).
    public struct NewIssuer: Sendable, Equatable {
        public var record: IssuerRecord
        public var parent: Reference?
        public var subject: Reference?

        public init(_ record: IssuerRecord, parent: Reference? = nil, subject: Reference? = nil) {
            self.record = record
            self.parent = parent
            self.subject = subject
        }
    }

    public struct StateUpdate: Sendable, Equatable {
        public var id: Int64
        public var state: IssuerState

        public init(id: Int64, state: IssuerState) {
            self.id = id
            self.state = state
        }
    }

    /// A root's newly signed CRL (RootCRL.swift). The number must be above the root's stored
    /// `crlNumber` (a root CRL's number only grows), else the change is refused.
    public struct RootCRLUpdate: Sendable, Equatable {
        public var root: Reference
        public var der: [UInt8]
        public var number: Int64
        public var nextUpdate: Date

        public init(root: Reference, der: [UInt8], number: Int64, nextUpdate: Date) {
            self.root = root
            self.der = der
            self.number = number
            self.nextUpdate = nextUpdate
        }
    }

    /// Marks a stored intermediate or cross certificate revoked (its state update to `retired`
    /// comes in `updates`).
    public struct Revocation: Sendable, Equatable {
        public var id: Int64
        public var reason: Int
        public var at: Date

        public init(id: Int64, reason: Int, at: Date) {
            self.id = id
            self.reason = reason
            self.at = at
        }
    }

    public var inserts: [NewIssuer]
    public var updates: [StateUpdate]
    /// Applied after the inserts.
    public var rootCRLs: [RootCRLUpdate]
    /// Applied after the updates.
    public var revocations: [Revocation]

    public init(inserts: [NewIssuer] = [], updates: [StateUpdate] = [], rootCRLs: [RootCRLUpdate] = [], revocations: [Revocation] = []) {
        self.inserts = inserts
        self.updates = updates
        self.rootCRLs = rootCRLs
        self.revocations = revocations
    }

    /// The refusal when a root CRL's number does not grow.
    public static func staleRootCRLNumber(_ serial: String, number: Int64, stored: Int64) -> AuthorityError {
        AuthorityError(.failedPrecondition, "root \(serial): CRL number \(number) is not above the stored \(stored)")
    }

    /// The updates in the order a store applies them: every non-active state first.
    public var orderedUpdates: [StateUpdate] {
        updates.filter { $0.state != .active } + updates.filter { $0.state == .active }
    }

    /// Refuses references a store could not resolve (an insert naming itself or a later insert).
    public func validate() throws {
        for (index, insert) in inserts.enumerated() {
            for case .inserted(let other)? in [insert.parent, insert.subject] where other < 0 || other >= index {
                throw AuthorityError(.invalidArgument, "issuer \(insert.record.serial) refers to an issuer inserted after it")
            }
        }
        for case .inserted(let index) in rootCRLs.map(\.root) where index < 0 || index >= inserts.count || inserts[index].record.kind != .root {
            throw AuthorityError(.invalidArgument, "a root CRL names an insert that is not a root")
        }
    }

    /// The refusal when the generation moved since the caller read it.
    public static let staleGenerationMessage = "the issuers changed meanwhile; run status again"
}

/// A certificate that a rollover still depends on.
public struct RolloverCertificate: Sendable, Equatable {
    public var serial: String
    public var spiffeID: String
    public var notAfter: Date

    public init(serial: String, spiffeID: String, notAfter: Date) {
        self.serial = serial
        self.spiffeID = spiffeID
        self.notAfter = notAfter
    }
}

/// What `AuthorityStore.rolloverCounts` finds. *Live* = unexpired, unrevoked, not superseded
/// (`superseded_by` is empty). The CA's own certificates (SPIFFE IDs under `/vouch/`, and the
/// given admin IDs) are counted apart from the workloads'.
public struct RolloverCounts: Sendable, Equatable {
    /// Live workload certificates issued by an intermediate of the root (cross certificates
    /// excluded): they chain only to that root.
    public var rootCertificates: Int
    /// The latest notAfter among them.
    public var rootLatestNotAfter: Date?
    /// Up to `sampleLimit` of them, latest notAfter first.
    public var rootSample: [RolloverCertificate]

    /// Live workload certificates, whichever issuer signed them.
    public var liveAgents: Int
    /// Of those, how many have a trust confirmation at or above the generation asked about.
    public var confirmedAgents: Int
    /// Up to `sampleLimit` of the unconfirmed ones, soonest notAfter first.
    public var unconfirmedSample: [RolloverCertificate]

    /// Live certificates of the CA itself (server, admins) issued under the root.
    public var ownCertificates: Int
    public var ownLatestNotAfter: Date?
    public var ownSample: [RolloverCertificate]

    public static let sampleLimit = 20

    public var unconfirmedAgents: Int { liveAgents - confirmedAgents }

    public init(rootCertificates: Int = 0, rootLatestNotAfter: Date? = nil, rootSample: [RolloverCertificate] = [],
                liveAgents: Int = 0, confirmedAgents: Int = 0, unconfirmedSample: [RolloverCertificate] = [],
                ownCertificates: Int = 0, ownLatestNotAfter: Date? = nil, ownSample: [RolloverCertificate] = []) {
        self.rootCertificates = rootCertificates
        self.rootLatestNotAfter = rootLatestNotAfter
        self.rootSample = rootSample
        self.liveAgents = liveAgents
        self.confirmedAgents = confirmedAgents
        self.unconfirmedSample = unconfirmedSample
        self.ownCertificates = ownCertificates
        self.ownLatestNotAfter = ownLatestNotAfter
        self.ownSample = ownSample
    }

    /// Whether a SPIFFE ID belongs to the CA itself (counted apart): under `/vouch/` or one of `adminIDs`.
    public static func isOwn(_ spiffeID: String, adminIDs: Set<String>) -> Bool {
        adminIDs.contains(spiffeID) || ownPathPattern(spiffeID)
    }

    static func ownPathPattern(_ spiffeID: String) -> Bool {
        guard spiffeID.hasPrefix("spiffe://") else { return false }
        let rest = spiffeID.dropFirst("spiffe://".count)
        guard let slash = rest.firstIndex(of: "/") else { return false }
        return rest[slash...].hasPrefix(IssuancePolicy.reservedPathPrefix)
    }
}

/// An agent's report that it holds the trust bundle of a generation, keyed by its certificate's serial.
public struct TrustConfirmation: Sendable, Equatable {
    public var serial: String
    public var spiffeID: String
    public var generation: Int64
    public var bundleSHA256: [UInt8]
    public var confirmedAt: Date
    public var peer: String

    public init(serial: String, spiffeID: String, generation: Int64, bundleSHA256: [UInt8], confirmedAt: Date, peer: String) {
        self.serial = serial
        self.spiffeID = spiffeID
        self.generation = generation
        self.bundleSHA256 = bundleSHA256
        self.confirmedAt = confirmedAt
        self.peer = peer
    }
}

extension RolloverCounts {
    /// A live certificate as a store reads it for `tally`.
    public struct Live: Sendable {
        public var serial: String
        public var spiffeID: String
        public var notAfter: Date
        /// nil = the initial intermediate.
        public var issuerID: Int64?
        /// The generation of its trust confirmation, if any.
        public var confirmedGeneration: Int64?

        public init(serial: String, spiffeID: String, notAfter: Date, issuerID: Int64?, confirmedGeneration: Int64?) {
            self.serial = serial
            self.spiffeID = spiffeID
            self.notAfter = notAfter
            self.issuerID = issuerID
            self.confirmedGeneration = confirmedGeneration
        }
    }

    /// The counts over `live` (unexpired, unrevoked, not superseded certificates), the same for every store.
    /// `rootID`'s certificates are those whose issuer is an intermediate with that parent.
    public static func tally(_ live: [Live], rootID: Int64, issuers: [IssuerRecord], generation: Int64,
                             adminIDs: Set<String>) -> RolloverCounts {
        let initial = issuers.first { $0.kind == .intermediate }?.id
        let underRoot = Set(issuers.filter { $0.kind == .intermediate && $0.parentID == rootID }.map(\.id))
        let isUnderRoot = { (certificate: Live) in (certificate.issuerID ?? initial).map(underRoot.contains) == true }
        let own = live.filter { isOwn($0.spiffeID, adminIDs: adminIDs) }
        let agents = live.filter { !isOwn($0.spiffeID, adminIDs: adminIDs) }
        let ownUnderRoot = own.filter(isUnderRoot)
        let agentsUnderRoot = agents.filter(isUnderRoot)
        let unconfirmed = agents.filter { ($0.confirmedGeneration ?? .min) < generation }
        func sample(_ certificates: [Live], latestFirst: Bool) -> [RolloverCertificate] {
            certificates.sorted { latestFirst ? ($0.notAfter, $0.serial) > ($1.notAfter, $1.serial) : ($0.notAfter, $0.serial) < ($1.notAfter, $1.serial) }
                .prefix(sampleLimit).map { RolloverCertificate(serial: $0.serial, spiffeID: $0.spiffeID, notAfter: $0.notAfter) }
        }
        return RolloverCounts(
            rootCertificates: agentsUnderRoot.count, rootLatestNotAfter: agentsUnderRoot.map(\.notAfter).max(),
            rootSample: sample(agentsUnderRoot, latestFirst: true),
            liveAgents: agents.count, confirmedAgents: agents.count - unconfirmed.count,
            unconfirmedSample: sample(unconfirmed, latestFirst: false),
            ownCertificates: ownUnderRoot.count, ownLatestNotAfter: ownUnderRoot.map(\.notAfter).max(),
            ownSample: sample(ownUnderRoot, latestFirst: true))
    }
}

extension IssuerChange {
    /// The refusal when making `serial` active would leave two active issuers of its kind.
    public static func secondActive(_ kind: IssuerKind, serial: String, active: String) -> AuthorityError {
        AuthorityError(.failedPrecondition, "issuer \(serial) cannot be active while \(kind.rawValue) \(active) is; retire that one in the same change")
    }

    /// Kinds of which at most one issuer is active.
    public static func hasSingleActive(_ kind: IssuerKind) -> Bool { kind == .root || kind == .intermediate }
}
