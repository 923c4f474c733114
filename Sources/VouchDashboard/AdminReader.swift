import GRPCCore
import VouchAPI

/// The Admin API reads the dashboard makes; the gRPC implementation talks to the CA,
/// the tests' fake answers from memory.
public protocol AdminReader: Sendable {
    func listCertificates(_ request: Vouch_V1_ListCertificatesRequest) async throws -> Vouch_V1_ListCertificatesResponse
    func certificate(serial: String) async throws -> Vouch_V1_CertificateInfo
    func auditEvents(after id: Int64, limit: Int32) async throws -> [Vouch_V1_AuditEvent]
    func verifyAuditLog() async throws -> Vouch_V1_AuditLogVerification
    func listAgents(_ request: Vouch_V1_ListAgentsRequest) async throws -> Vouch_V1_ListAgentsResponse
}

/// Opens a reader for one page load and closes it after.
public protocol AdminConnector: Sendable {
    /// Where the reads go, as a page names it when the CA does not answer.
    var serverDescription: String { get }
    func withReader<Result: Sendable>(_ body: (any AdminReader) async throws -> Result) async throws -> Result
}

extension AdminReader {
    /// Every page of `request`, up to `cap` certificates; `capped` when more were left.
    func allCertificates(_ request: Vouch_V1_ListCertificatesRequest, cap: Int) async throws
        -> (certificates: [Vouch_V1_CertificateInfo], capped: Bool) {
        var request = request, all: [Vouch_V1_CertificateInfo] = []
        request.pageSize = 1000
        repeat {
            let page = try await listCertificates(request)
            all += page.certificates
            // A page without certificates makes no progress: its token is not followed (a CA that sent one would be asked for ever).
            request.pageToken = page.certificates.isEmpty ? "" : page.nextPageToken
        } while !request.pageToken.isEmpty && all.count < cap
        return (Array(all.prefix(cap)), !request.pageToken.isEmpty || all.count > cap)
    }
}

extension Error {
    /// The CA does not have this call (an older version), or has it switched off.
    var isUnavailableCall: Bool {
        guard let error = self as? RPCError else { return false }
        return error.code == .unimplemented || error.code == .failedPrecondition
    }

    /// One line for a page, as the CLI words it.
    var pageDescription: String { describe(self) }
}
