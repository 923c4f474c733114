import Foundation
import VouchAuthority

extension Vouch_V1_CertificateResponse {
    init(_ issued: IssuedCertificate) {
        self.init()
        certificate = Data(issued.record.der)
        chain = issued.chain.map { Data($0) }
        roots = issued.roots.map { Data($0) }
        notAfter = issued.record.notAfter.unixSeconds
        serial = issued.record.serial
        spiffeID = issued.record.spiffeID
    }
}

extension Vouch_V1_CertificateInfo {
    /// - Parameter issuer: the serial of the intermediate that issued it.
    init(_ record: CertificateRecord, now: Date, issuer: String = "") {
        self.init()
        self.issuer = issuer
        serial = record.serial
        spiffeID = record.spiffeID
        dnsNames = record.dnsNames
        ipAddresses = record.ipAddresses
        notBefore = record.notBefore.unixSeconds
        notAfter = record.notAfter.unixSeconds
        status = Vouch_V1_CertificateStatus(record.status(at: now))
        revokedAt = record.revokedAt.map { $0.unixSeconds } ?? 0
        revocationReason = Int32(record.revocationReason ?? 0)
        renewedFrom = record.renewedFrom ?? ""
        supersededBy = record.supersededBy ?? ""
        certificate = Data(record.der)
        issuedAt = record.issuedAt.unixSeconds
    }
}

extension Vouch_V1_CertificateStatus {
    init(_ status: CertificateStatus) {
        switch status {
        case .active: self = .active
        case .revoked: self = .revoked
        case .expired: self = .expired
        }
    }

    var authorityStatus: CertificateStatus? {
        switch self {
        case .active: return .active
        case .revoked: return .revoked
        case .expired: return .expired
        default: return nil
        }
    }
}

extension Vouch_V1_RevocationEvent {
    /// - Parameter issuer: the serial of the intermediate that issued the revoked certificate.
    init(_ record: RevocationRecord, issuer: String = "") {
        self.init()
        self.issuer = issuer
        sequence = record.sequence
        serial = record.serial
        reason = Int32(record.reason)
        revokedAt = record.revokedAt.unixSeconds
        spiffeID = record.spiffeID
        notAfter = record.notAfter.unixSeconds
    }
}

extension Vouch_V1_TokenInfo {
    init(_ record: TokenRecord) {
        self.init()
        tokenID = record.id
        spiffeID = record.spiffeID
        dnsNames = record.dnsNames
        ipAddresses = record.ipAddresses
        createdAt = record.createdAt.unixSeconds
        expiresAt = record.expiresAt.unixSeconds
        usesAllowed = Int32(record.usesAllowed)
        usesConsumed = Int32(record.usesConsumed)
        revoked = record.revoked
    }
}

extension Vouch_V1_AuditEvent {
    init(_ record: AuditRecord) {
        self.init()
        id = record.id
        time = record.entry.time.unixSeconds
        actor = record.entry.actor
        action = record.entry.action
        subject = record.entry.subject
        peer = record.entry.peer
        detail = record.entry.detail
    }
}

extension AgentReportRecord {
    /// The report as sent; `validated()` checks it.
    init(_ request: Vouch_V1_AgentReport) {
        self.init(servingSerial: request.servingSerial, servingNotAfter: request.servingNotAfter,
                  trustGeneration: request.trustGeneration, bundleSHA256: Array(request.bundleSha256), rootSerials: request.rootSerials,
                  lastRotation: request.lastRotation, lastError: request.lastError, lastErrorAt: request.lastErrorAt,
                  rotations: request.rotations, failures: request.failures, agentVersion: request.agentVersion,
                  hostName: request.hostName)
    }
}

extension Vouch_V1_AgentInfo {
    init(_ agent: JudgedAgent) {
        self.init()
        let row = agent.row, report = agent.row.report
        lineage = row.lineage
        spiffeID = row.spiffeID
        hostName = report.hostName
        agentVersion = report.agentVersion
        servingSerial = report.servingSerial
        // The CA's record of the served certificate when it has one, else what the agent said.
        servingNotAfter = row.served.map { $0.notAfter.unixSeconds } ?? report.servingNotAfter
        servingSupersededBy = row.served?.supersededBy ?? ""
        trustGeneration = report.trustGeneration
        bundleSha256 = Data(report.bundleSHA256)
        rootSerials = report.rootSerials
        lastRotation = report.lastRotation
        lastError = report.lastError
        lastErrorAt = report.lastErrorAt
        rotations = report.rotations
        failures = report.failures
        firstSeen = row.firstSeen.unixSeconds
        lastReport = row.reportedAt.unixSeconds
        peer = row.peer
        reportedBySerial = row.callerSerial
        problems = agent.problems.map(Vouch_V1_AgentProblem.init)
    }
}

extension Vouch_V1_AgentProblem {
    init(_ problem: AgentProblem) {
        switch problem {
        case .servingExpired: self = .servingExpired
        case .servingRevoked: self = .servingRevoked
        case .servingSuperseded: self = .servingSuperseded
        case .oldBundle: self = .oldBundle
        case .silent: self = .silent
        case .renewalFailing: self = .renewalFailing
        }
    }
}
