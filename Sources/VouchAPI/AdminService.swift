import Foundation
import GRPCCore
import VouchAuthority

/// `vouch.v1.Admin`: tokens, certificate listings and the audit log. The
/// authorization interceptor admits admin identities only.
public struct AdminService: Vouch_V1_Admin.SimpleServiceProtocol {
    let authority: CertificateAuthority
    /// Signs audit checkpoints for GetAuditCheckpoint (AdminService+AuditCheckpoint.swift); nil: unavailable.
    let auditCheckpoints: AuditCheckpointer?

    public init(authority: CertificateAuthority, auditCheckpoints: AuditCheckpointer? = nil) {
        self.authority = authority
        self.auditCheckpoints = auditCheckpoints
    }

    public func createToken(request: Vouch_V1_CreateTokenRequest, context: ServerContext) async throws -> Vouch_V1_CreateTokenResponse {
        let created = try await authority.createToken(
            spiffeID: request.spiffeID, dnsNames: request.dnsNames, ipAddresses: request.ipAddresses,
            ttlSeconds: request.ttlSeconds, uses: Int(request.uses), caller: RPCCaller.of(context))
        var response = Vouch_V1_CreateTokenResponse()
        response.token = created.token.text
        response.tokenID = created.record.id
        response.expiresAt = created.record.expiresAt.unixSeconds
        return response
    }

    public func listTokens(request: Vouch_V1_ListTokensRequest, context: ServerContext) async throws -> Vouch_V1_ListTokensResponse {
        var response = Vouch_V1_ListTokensResponse()
        response.tokens = try await authority.listTokens().map(Vouch_V1_TokenInfo.init)
        try await authority.auditAdminRead(.adminListTokens, caller: RPCCaller.of(context))
        return response
    }

    public func revokeToken(request: Vouch_V1_RevokeTokenRequest, context: ServerContext) async throws -> Vouch_V1_RevokeTokenResponse {
        try await authority.revokeToken(id: request.tokenID, caller: RPCCaller.of(context))
        return Vouch_V1_RevokeTokenResponse()
    }

    public func listCertificates(request: Vouch_V1_ListCertificatesRequest, context: ServerContext) async throws -> Vouch_V1_ListCertificatesResponse {
        guard request.pageSize >= 0, request.pageSize <= 1000, request.expiringWithinSeconds >= 0 else {
            throw AuthorityError(.invalidArgument, "page_size must be 0-1000 and expiring_within_seconds not negative")
        }
        var beforeID: Int64?
        if !request.pageToken.isEmpty {
            guard let id = Int64(request.pageToken), id > 0 else { throw AuthorityError(.invalidArgument, "bad page_token") }
            beforeID = id
        }
        let limit = request.pageSize == 0 ? 100 : Int(request.pageSize)
        let records = try await authority.listCertificates(
            identityGlob: request.identity.isEmpty ? nil : request.identity,
            status: request.status.authorityStatus,
            expiringWithin: request.expiringWithinSeconds > 0 ? TimeInterval(request.expiringWithinSeconds) : nil,
            limit: limit, beforeID: beforeID)
        let now = authority.now
        var response = Vouch_V1_ListCertificatesResponse()
        response.certificates = records.map { Vouch_V1_CertificateInfo($0, now: now, issuer: authority.issuerSerial(of: $0)) }
        if records.count == limit, let last = records.last?.id { response.nextPageToken = String(last) }
        try await authority.auditAdminRead(.adminListCertificates, subject: request.identity, caller: RPCCaller.of(context))
        return response
    }

    public func getCertificate(request: Vouch_V1_GetCertificateRequest, context: ServerContext) async throws -> Vouch_V1_CertificateInfo {
        let record = try await authority.certificate(serial: request.serial)
        let info = Vouch_V1_CertificateInfo(record, now: authority.now, issuer: authority.issuerSerial(of: record))
        try await authority.auditAdminRead(.adminGetCertificate, subject: info.serial, caller: RPCCaller.of(context))
        return info
    }

    public func listAuditEvents(request: Vouch_V1_ListAuditEventsRequest, context: ServerContext) async throws -> Vouch_V1_ListAuditEventsResponse {
        guard request.limit >= 0, request.limit <= 1000 else { throw AuthorityError(.invalidArgument, "limit must be 0-1000") }
        var response = Vouch_V1_ListAuditEventsResponse()
        response.events = try await authority.auditEvents(afterID: request.afterID, limit: request.limit == 0 ? 100 : Int(request.limit))
            .map(Vouch_V1_AuditEvent.init)
        try await authority.auditAdminRead(.adminListAuditEvents, caller: RPCCaller.of(context))
        return response
    }
}
