import Foundation
import VouchCrypto

/// What an agent reports of itself (ReportAgent): the certificate it serves, the trust bundle it
/// holds and how its renewals go. Times are the agent's Unix seconds, 0 for none.
public struct AgentReportRecord: Sendable, Equatable {
    /// Lowercase hex serial of the certificate the agent serves.
    public var servingSerial: String
    public var servingNotAfter: Int64
    public var trustGeneration: Int64
    /// SHA-256 of the agent's bundle.pem; empty if it did not say.
    public var bundleSHA256: [UInt8]
    /// Lowercase hex serials of the roots in the agent's bundle.pem.
    public var rootSerials: [String]
    public var lastRotation: Int64
    public var lastError: String
    public var lastErrorAt: Int64
    public var rotations: Int64
    public var failures: Int64
    public var agentVersion: String
    public var hostName: String

    public init(servingSerial: String, servingNotAfter: Int64 = 0, trustGeneration: Int64 = 0, bundleSHA256: [UInt8] = [],
                rootSerials: [String] = [], lastRotation: Int64 = 0, lastError: String = "", lastErrorAt: Int64 = 0,
                rotations: Int64 = 0, failures: Int64 = 0, agentVersion: String = "", hostName: String = "") {
        self.servingSerial = servingSerial
        self.servingNotAfter = servingNotAfter
        self.trustGeneration = trustGeneration
        self.bundleSHA256 = bundleSHA256
        self.rootSerials = rootSerials
        self.lastRotation = lastRotation
        self.lastError = lastError
        self.lastErrorAt = lastErrorAt
        self.rotations = rotations
        self.failures = failures
        self.agentVersion = agentVersion
        self.hostName = hostName
    }

    // Bounds: a report is a few hundred bytes; anything larger is not an agent's.
    public static let maximumHostNameBytes = 253
    public static let maximumAgentVersionBytes = 64
    public static let maximumLastErrorBytes = 1024
    public static let maximumRootSerials = 16
    public static let maximumSerialDigits = 40

    /// The report as the CA keeps it: serials in canonical lowercase hex, `lastError` cut to
    /// 1 KiB on a character boundary with control and hidden characters (`isHiddenOrControl`) made spaces (it
    /// is printed in terminals and pages). Throws `invalidArgument`, naming the field, for anything else out
    /// of bounds: nothing of such a report is stored.
    public func validated() throws -> AgentReportRecord {
        var report = self
        report.servingSerial = try Self.serial(servingSerial, field: "serving_serial")
        for (field, value) in [("serving_not_after", servingNotAfter), ("trust_generation", trustGeneration),
                               ("last_rotation", lastRotation), ("last_error_at", lastErrorAt), ("rotations", rotations),
                               ("failures", failures)] where value < 0 {
            throw AuthorityError(.invalidArgument, "\(field) must not be negative, not \(value)")
        }
        guard bundleSHA256.isEmpty || bundleSHA256.count == 32 else {
            throw AuthorityError(.invalidArgument, "bundle_sha256 must be empty or a SHA-256 digest (32 bytes), not \(bundleSHA256.count) bytes")
        }
        guard rootSerials.count <= Self.maximumRootSerials else {
            throw AuthorityError(.invalidArgument, "root_serials lists \(rootSerials.count) roots; at most \(Self.maximumRootSerials)")
        }
        report.rootSerials = try rootSerials.map { try Self.serial($0, field: "root_serials") }
        report.hostName = try Self.label(hostName, field: "host_name", limit: Self.maximumHostNameBytes)
        report.agentVersion = try Self.label(agentVersion, field: "agent_version", limit: Self.maximumAgentVersionBytes)
        report.lastError = Self.printable(Self.prefix(lastError, bytes: Self.maximumLastErrorBytes))
        return report
    }

    /// A serial as agents send it: 1 to 40 hex digits, returned without leading zero bytes.
    static func serial(_ text: String, field: String) throws -> String {
        guard !text.isEmpty, text.utf8.count <= maximumSerialDigits, text.utf8.allSatisfy(\.isHexDigit),
              let canonical = SerialNumber.canonicalHex(text) else {
            throw AuthorityError(.invalidArgument, "\(field): \(AuthorityError.quoted(text, limit: 48)) is not a serial (1 to \(maximumSerialDigits) hex digits)")
        }
        return canonical
    }

    /// A short name shown in listings: at most `limit` bytes of UTF-8 without control characters.
    static func label(_ text: String, field: String, limit: Int) throws -> String {
        guard text.utf8.count <= limit else {
            throw AuthorityError(.invalidArgument, "\(field) is \(text.utf8.count) bytes; at most \(limit)")
        }
        guard !text.unicodeScalars.contains(where: \.isHiddenOrControl) else {
            throw AuthorityError(.invalidArgument, "\(field) \(AuthorityError.quoted(text)) holds a control character")
        }
        return text
    }

    /// The longest prefix of `text` of at most `bytes` bytes of UTF-8 that ends between two
    /// characters (Unicode scalars), so the cut leaves valid text.
    static func prefix(_ text: String, bytes: Int) -> String {
        guard text.utf8.count > bytes else { return text }
        var kept = String.UnicodeScalarView()
        var count = 0
        for scalar in text.unicodeScalars {
            count += UTF8.width(scalar)
            if count > bytes { break }
            kept.append(scalar)
        }
        return String(kept)
    }

    static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: \.isHiddenOrControl) else { return text }
        return String(String.UnicodeScalarView(text.unicodeScalars.map { $0.isHiddenOrControl ? " " : $0 }))
    }
}

private extension UInt8 {
    var isHexDigit: Bool { (0x30...0x39).contains(self) || (0x61...0x66).contains(self) || (0x41...0x46).contains(self) }
}

/// One agent's latest report as stored, keyed by its lineage (the serial of the certificate it
/// enrolled with, at the root of the `renewed_from` chain: it stays the same across renewals).
/// `served` is what the store joins in from the certificate table for judging; nil when the
/// served certificate is not stored (and always in `AuthorityStoreSnapshot`).
public struct AgentReportRow: Sendable, Equatable {
    public var lineage: String
    /// The serial of the client certificate the latest report came with.
    public var callerSerial: String
    public var spiffeID: String
    public var report: AgentReportRecord
    public var firstSeen: Date
    public var reportedAt: Date
    public var peer: String
    public var served: ServedCertificate?

    public init(lineage: String, callerSerial: String, spiffeID: String, report: AgentReportRecord, firstSeen: Date,
                reportedAt: Date, peer: String, served: ServedCertificate? = nil) {
        self.lineage = lineage
        self.callerSerial = callerSerial
        self.spiffeID = spiffeID
        self.report = report
        self.firstSeen = firstSeen
        self.reportedAt = reportedAt
        self.peer = peer
        self.served = served
    }
}

/// What the CA knows of the certificate an agent serves.
public struct ServedCertificate: Sendable, Equatable {
    public var notAfter: Date
    public var revokedAt: Date?
    /// The newest certificate renewed from it, and when that one was issued.
    public var supersededBy: String?
    public var successorIssuedAt: Date?

    public init(notAfter: Date, revokedAt: Date? = nil, supersededBy: String? = nil, successorIssuedAt: Date? = nil) {
        self.notAfter = notAfter
        self.revokedAt = revokedAt
        self.supersededBy = supersededBy
        self.successorIssuedAt = successorIssuedAt
    }
}
