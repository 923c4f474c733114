import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI
import VouchAuthority
import VouchCrypto

struct CertCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cert", abstract: "List, inspect and revoke issued certificates.",
        subcommands: [CertList.self, CertShow.self, CertRevoke.self])
}

/// A certificate as the CLI prints it in JSON.
struct CertificateJSON: Encodable {
    let serial, spiffe_id, status, not_before, not_after, issued_at: String
    let dns_names, ip_addresses: [String]
    let revoked_at: String?
    let revocation_reason: String?
    let renewed_from: String?
    let superseded_by: String?
    let pem: String?
    /// The certificate's whole line, first enrollment to newest renewal (cert show only).
    var lineage: [LineageEntry]?

    init(_ info: Vouch_V1_CertificateInfo, includePEM: Bool) {
        serial = info.serial
        spiffe_id = info.spiffeID
        status = info.status.name
        not_before = iso8601(info.notBefore)
        not_after = iso8601(info.notAfter)
        issued_at = iso8601(info.issuedAt)
        dns_names = info.dnsNames
        ip_addresses = info.ipAddresses
        revoked_at = info.revokedAt == 0 ? nil : iso8601(info.revokedAt)
        revocation_reason = info.revokedAt == 0 ? nil : RevocationReason(rawValue: Int(info.revocationReason))?.description
        renewed_from = info.renewedFrom.isEmpty ? nil : info.renewedFrom
        superseded_by = info.supersededBy.isEmpty ? nil : info.supersededBy
        pem = includePEM ? (try? X509Certificate(der: Array(info.certificate)).pem) : nil
    }
}

struct CertList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List issued certificates, newest first.")

    @OptionGroup var connection: AdminConnectionOptions

    @Option(help: "Only SPIFFE IDs matching this glob (* and ?).")
    var identity: String?

    @Option(help: "Only this status: active, revoked, expired.")
    var status: String?

    @Option(help: "Only certificates expiring within this duration, e.g. 1h.")
    var expiringWithin: DurationArgument?

    @Option(help: "Maximum certificates to list (all pages up to this).")
    var limit: Int = 100

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        try await runReportingErrors {
            try connection.checkFiles()
            var request = Vouch_V1_ListCertificatesRequest()
            request.identity = identity ?? ""
            switch status {
            case nil: break
            case "active"?: request.status = .active
            case "revoked"?: request.status = .revoked
            case "expired"?: request.status = .expired
            case let other?: throw CLIError("unknown status \(other): use active, revoked or expired")
            }
            request.expiringWithinSeconds = expiringWithin?.seconds ?? 0
            guard limit > 0 else { throw CLIError("--limit must be positive") }
            let certificates = try await VouchClient.with(server: connection.server, credentials: connection.credentials) { client in
                let admin = Vouch_V1_Admin.Client(wrapping: client)
                var all: [Vouch_V1_CertificateInfo] = []
                repeat {
                    request.pageSize = Int32(min(1000, limit - all.count))
                    let page = try await admin.listCertificates(request, options: connection.callOptions)
                    all += page.certificates
                    request.pageToken = page.nextPageToken
                } while !request.pageToken.isEmpty && all.count < limit
                return all
            }
            if json {
                try printJSON(certificates.map { CertificateJSON($0, includePEM: false) })
            } else {
                printTable(["SERIAL", "SPIFFE ID", "STATUS", "NOT AFTER"], certificates.map {
                    [$0.serial, $0.spiffeID, $0.status.name, iso8601($0.notAfter)]
                })
            }
        }
    }
}

struct CertShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one certificate, with its PEM.")

    @OptionGroup var connection: AdminConnectionOptions

    @Argument(help: "Serial number (hex).")
    var serial: String

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        try await runReportingErrors {
            try connection.checkFiles()
            var request = Vouch_V1_GetCertificateRequest()
            request.serial = serial
            let (info, lineage) = try await VouchClient.with(server: connection.server, credentials: connection.credentials) { client in
                let admin = Vouch_V1_Admin.Client(wrapping: client)
                let info = try await admin.getCertificate(request, options: connection.callOptions)
                return (info, try await Self.lineage(of: info, admin: admin, options: connection.callOptions))
            }
            var view = CertificateJSON(info, includePEM: true)
            view.lineage = lineage
            if json {
                try printJSON(view)
                return
            }
            print("serial:       \(view.serial)")
            print("spiffe id:    \(view.spiffe_id)")
            if !view.dns_names.isEmpty { print("dns names:    \(view.dns_names.joined(separator: ", "))") }
            if !view.ip_addresses.isEmpty { print("ip addresses: \(view.ip_addresses.joined(separator: ", "))") }
            print("status:       \(view.status)")
            print("not before:   \(view.not_before)")
            print("not after:    \(view.not_after)")
            print("issued at:    \(view.issued_at)")
            if let from = view.renewed_from { print("renewed from: \(from)") }
            if let by = view.superseded_by { print("superseded by: \(by)") }
            if let at = view.revoked_at { print("revoked at:   \(at) (\(view.revocation_reason ?? "?"))") }
            if lineage.count > 1 {
                print("lineage:      " + lineage.map { entry in
                    (entry.serial == view.serial ? "[\(entry.serial)]" : entry.serial) + " (\(entry.status))"
                }.joined(separator: " -> "))
            }
            print(view.pem ?? "", terminator: "")
        }
    }

    /// Longest lineage walked each way; a line renewed hourly for a week is 168.
    static let maximumLineage = 500

    /// The lineage of `info`: its ancestors by renewed_from, itself, its descendants by superseded_by.
    static func lineage(of info: Vouch_V1_CertificateInfo, admin: Vouch_V1_Admin.Client<HTTP2ClientTransport.Posix>,
                        options: CallOptions) async throws -> [LineageEntry] {
        func fetch(_ serial: String) async throws -> Vouch_V1_CertificateInfo {
            var request = Vouch_V1_GetCertificateRequest()
            request.serial = serial
            return try await admin.getCertificate(request, options: options)
        }
        var before: [LineageEntry] = []
        var cursor = info
        while !cursor.renewedFrom.isEmpty, before.count < maximumLineage {
            cursor = try await fetch(cursor.renewedFrom)
            before.insert(LineageEntry(cursor), at: 0)
        }
        var after: [LineageEntry] = []
        cursor = info
        while !cursor.supersededBy.isEmpty, after.count < maximumLineage {
            cursor = try await fetch(cursor.supersededBy)
            after.append(LineageEntry(cursor))
        }
        return before + [LineageEntry(info)] + after
    }
}

struct LineageEntry: Encodable {
    let serial, status, issued_at: String

    init(_ info: Vouch_V1_CertificateInfo) {
        serial = info.serial
        status = info.status.name
        issued_at = iso8601(info.issuedAt)
    }
}

struct CertRevoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke", abstract: "Revoke a certificate: refused at once by the CA and listed in the CRL.")

    @OptionGroup var connection: AdminConnectionOptions

    @Argument(help: "Serial number (hex).")
    var serial: String

    @Option(help: "RFC 5280 reason: a code or a name (keyCompromise, superseded, cessationOfOperation, ...).")
    var reason: String = "unspecified"

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        try await runReportingErrors {
            guard let code = RevocationReason(text: reason) else {
                let names = RevocationReason.allCases.map { "\($0.rawValue)=\($0)" }
                throw CLIError("unknown reason \(reason): use one of \(names.joined(separator: ", "))")
            }
            try connection.checkFiles()
            var request = Vouch_V1_RevokeRequest()
            request.serial = serial
            request.reason = Int32(code.rawValue)
            let response = try await VouchClient.with(server: connection.server, credentials: connection.credentials) { client in
                try await Vouch_V1_CertificateAuthority.Client(wrapping: client).revoke(request, options: connection.callOptions)
            }
            if json {
                try printJSON(["serial": response.serial, "revoked_at": iso8601(response.revokedAt),
                               "reason": code.description])
            } else {
                print("revoked \(response.serial) at \(iso8601(response.revokedAt)) (\(code))")
            }
        }
    }
}
