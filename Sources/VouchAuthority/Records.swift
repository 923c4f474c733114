import Foundation

/// An issued certificate as the authority stores it.
public struct CertificateRecord: Sendable, Equatable {
    /// Storage row id; nil until stored. Orders certificates by issuance.
    public var id: Int64?
    /// Lowercase hex serial.
    public var serial: String
    public var spiffeID: String
    public var dnsNames: [String]
    public var ipAddresses: [String]
    public var notBefore: Date
    public var notAfter: Date
    public var issuedAt: Date
    public var der: [UInt8]
    /// Serial of the certificate this one was renewed from.
    public var renewedFrom: String?
    /// Serial of the newest certificate renewed from this one.
    public var supersededBy: String?
    /// Public id of the token that enrolled it.
    public var tokenID: String?
    public var revokedAt: Date?
    public var revocationReason: Int?
    /// The issuer (`IssuerRecord.id`) that signed it; nil = the initial intermediate (rows written
    /// before issuers were stored, or by a replica not upgraded yet).
    public var issuerID: Int64?

    public init(id: Int64? = nil, serial: String, spiffeID: String, dnsNames: [String], ipAddresses: [String],
                notBefore: Date, notAfter: Date, issuedAt: Date, der: [UInt8], renewedFrom: String? = nil,
                supersededBy: String? = nil, tokenID: String? = nil, revokedAt: Date? = nil, revocationReason: Int? = nil,
                issuerID: Int64? = nil) {
        self.issuerID = issuerID
        self.id = id
        self.serial = serial
        self.spiffeID = spiffeID
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.issuedAt = issuedAt
        self.der = der
        self.renewedFrom = renewedFrom
        self.supersededBy = supersededBy
        self.tokenID = tokenID
        self.revokedAt = revokedAt
        self.revocationReason = revocationReason
    }

    public func status(at now: Date) -> CertificateStatus {
        if revokedAt != nil { return .revoked }
        return notAfter <= now ? .expired : .active
    }
}

public enum CertificateStatus: String, Sendable, CaseIterable {
    case active, revoked, expired
}

/// A one-time enrollment token; only the SHA-256 of its secret is kept.
public struct TokenRecord: Sendable, Equatable {
    public var id: String
    public var secretHash: [UInt8]
    public var spiffeID: String
    public var dnsNames: [String]
    public var ipAddresses: [String]
    public var createdAt: Date
    public var expiresAt: Date
    public var usesAllowed: Int
    public var usesConsumed: Int
    public var revoked: Bool

    public init(id: String, secretHash: [UInt8], spiffeID: String, dnsNames: [String], ipAddresses: [String],
                createdAt: Date, expiresAt: Date, usesAllowed: Int, usesConsumed: Int = 0, revoked: Bool = false) {
        self.id = id
        self.secretHash = secretHash
        self.spiffeID = spiffeID
        self.dnsNames = dnsNames
        self.ipAddresses = ipAddresses
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.usesAllowed = usesAllowed
        self.usesConsumed = usesConsumed
        self.revoked = revoked
    }
}

/// One revocation, numbered so watchers can resume after the last one they saw.
public struct RevocationRecord: Sendable, Equatable {
    public var sequence: Int64
    public var serial: String
    public var reason: Int
    public var revokedAt: Date
    public var spiffeID: String
    public var notAfter: Date
    /// The revoked certificate's issuer; nil = the initial intermediate.
    public var issuerID: Int64?

    public init(sequence: Int64, serial: String, reason: Int, revokedAt: Date, spiffeID: String, notAfter: Date,
                issuerID: Int64? = nil) {
        self.issuerID = issuerID
        self.sequence = sequence
        self.serial = serial
        self.reason = reason
        self.revokedAt = revokedAt
        self.spiffeID = spiffeID
        self.notAfter = notAfter
    }
}

/// What the audit log records for one action.
public struct AuditEntry: Sendable, Equatable {
    public var time: Date
    /// A SPIFFE ID, `token:<id>`, or `local`.
    public var actor: String
    /// An `AuditAction`'s raw value, kept as the stored text: `vouch audit verify` must read and
    /// hash a row whose action was tampered with, to name it.
    public var action: String
    /// A serial or a token id.
    public var subject: String
    public var peer: String
    public var detail: String

    public init(time: Date, actor: String, action: AuditAction, subject: String, peer: String, detail: String) {
        self.init(time: time, actor: actor, recordedAction: action.rawValue, subject: subject, peer: peer, detail: detail)
    }

    /// An entry as a store read it back, action text as stored.
    public init(time: Date, actor: String, recordedAction: String, subject: String, peer: String, detail: String) {
        self.time = time
        self.actor = actor
        self.action = recordedAction
        self.subject = subject
        self.peer = peer
        self.detail = detail
    }
}

/// A stored audit entry with its id.
public struct AuditRecord: Sendable, Equatable {
    public var id: Int64
    public var entry: AuditEntry

    public init(id: Int64, entry: AuditEntry) {
        self.id = id
        self.entry = entry
    }
}

/// Filters for listing certificates, newest first, paged by row id.
public struct CertificateQuery: Sendable {
    /// Glob over SPIFFE IDs (`*`, `?`); nil for all.
    public var identityGlob: String?
    public var status: CertificateStatus?
    /// notAfter within this interval from `now` and not yet past.
    public var expiringWithin: TimeInterval?
    public var now: Date
    public var limit: Int
    /// Only rows with an id below this (the previous page's last id).
    public var beforeID: Int64?

    public init(identityGlob: String? = nil, status: CertificateStatus? = nil, expiringWithin: TimeInterval? = nil,
                now: Date, limit: Int, beforeID: Int64? = nil) {
        self.identityGlob = identityGlob
        self.status = status
        self.expiringWithin = expiringWithin
        self.now = now
        self.limit = limit
        self.beforeID = beforeID
    }
}
