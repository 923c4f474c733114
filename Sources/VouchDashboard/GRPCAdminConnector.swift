import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI

/// One mutual-TLS connection to the CA per page load, with the admin certificate read from
/// disk each time: a renewed admin certificate is used without restarting `vouch ui`.
public struct GRPCAdminConnector: AdminConnector {
    let server: HostPort
    let credentials: VouchClient.Credentials
    let options: CallOptions

    public init(server: HostPort, credentials: VouchClient.Credentials, timeout: Duration) {
        self.server = server
        self.credentials = credentials
        var options = VouchClient.options(timeout: timeout)
        // A CA that is down makes a page that says so at once, not after the whole deadline.
        options.waitForReady = false
        self.options = options
    }

    public var serverDescription: String { server.description }

    public func withReader<Result: Sendable>(_ body: (any AdminReader) async throws -> Result) async throws -> Result {
        try await VouchClient.with(server: server, credentials: credentials) { client in
            try await body(GRPCAdminReader(admin: Vouch_V1_Admin.Client(wrapping: client), options: options))
        }
    }
}

struct GRPCAdminReader: AdminReader {
    let admin: Vouch_V1_Admin.Client<HTTP2ClientTransport.Posix>
    let options: CallOptions

    func listCertificates(_ request: Vouch_V1_ListCertificatesRequest) async throws -> Vouch_V1_ListCertificatesResponse {
        try await admin.listCertificates(request, options: options)
    }

    func certificate(serial: String) async throws -> Vouch_V1_CertificateInfo {
        var request = Vouch_V1_GetCertificateRequest()
        request.serial = serial
        return try await admin.getCertificate(request, options: options)
    }

    func auditEvents(after id: Int64, limit: Int32) async throws -> [Vouch_V1_AuditEvent] {
        var request = Vouch_V1_ListAuditEventsRequest()
        request.afterID = id
        request.limit = limit
        return try await admin.listAuditEvents(request, options: options).events
    }

    func verifyAuditLog() async throws -> Vouch_V1_AuditLogVerification {
        try await admin.verifyAuditLog(Vouch_V1_VerifyAuditLogRequest(), options: options)
    }

    func listAgents(_ request: Vouch_V1_ListAgentsRequest) async throws -> Vouch_V1_ListAgentsResponse {
        try await admin.listAgents(request, options: options)
    }
}
