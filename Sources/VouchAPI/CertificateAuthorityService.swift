import Foundation
import GRPCCore
import VouchAuthority

/// `vouch.v1.CertificateAuthority` over the authority core.
public struct CertificateAuthorityService: Vouch_V1_CertificateAuthority.SimpleServiceProtocol {
    let authority: CertificateAuthority

    public init(authority: CertificateAuthority) { self.authority = authority }

    public func enroll(request: Vouch_V1_EnrollRequest, context: ServerContext) async throws -> Vouch_V1_CertificateResponse {
        Vouch_V1_CertificateResponse(try await authority.enroll(
            token: request.token.isEmpty ? (BearerToken.current ?? "") : request.token,
            csr: Array(request.csr), ttlSeconds: request.ttlSeconds, caller: RPCCaller.of(context)))
    }

    public func renew(request: Vouch_V1_RenewRequest, context: ServerContext) async throws -> Vouch_V1_CertificateResponse {
        Vouch_V1_CertificateResponse(try await authority.renew(
            csr: Array(request.csr), ttlSeconds: request.ttlSeconds, caller: RPCCaller.of(context)))
    }

    public func revoke(request: Vouch_V1_RevokeRequest, context: ServerContext) async throws -> Vouch_V1_RevokeResponse {
        let record = try await authority.revoke(serial: request.serial, reason: Int(request.reason), caller: RPCCaller.of(context))
        var response = Vouch_V1_RevokeResponse()
        response.serial = record.serial
        response.revokedAt = Int64(record.revokedAt.timeIntervalSince1970)
        response.sequence = record.sequence
        return response
    }

    public func getTrustBundle(request: Vouch_V1_TrustBundleRequest, context: ServerContext) async throws -> Vouch_V1_TrustBundle {
        var bundle = Vouch_V1_TrustBundle()
        bundle.roots = authority.rootsDER.map { Data($0) }
        bundle.intermediates = authority.chainDER.map { Data($0) }
        return bundle
    }

    // Until the CA follows several issuers, the bundle never changes: the stream sends it once.
    public func watchTrustBundle(request: Vouch_V1_WatchTrustBundleRequest, response: RPCWriter<Vouch_V1_TrustBundle>,
                                 context: ServerContext) async throws {
        try await response.write(try await getTrustBundle(request: Vouch_V1_TrustBundleRequest(), context: context))
    }

    public func confirmTrustBundle(request: Vouch_V1_TrustBundleConfirmation,
                                   context: ServerContext) async throws -> Vouch_V1_TrustBundleConfirmationResponse {
        Vouch_V1_TrustBundleConfirmationResponse()
    }

    public func getCRL(request: Vouch_V1_CRLRequest, context: ServerContext) async throws -> Vouch_V1_CRLResponse {
        let snapshot = try await authority.currentCRL(issuer: request.issuer.isEmpty ? nil : request.issuer)
        var response = Vouch_V1_CRLResponse()
        response.issuer = snapshot.issuer
        response.crl = Data(snapshot.der)
        response.crlNumber = snapshot.number
        response.thisUpdate = Int64(snapshot.thisUpdate)
        response.nextUpdate = Int64(snapshot.nextUpdate)
        return response
    }

    public func watchRevocations(request: Vouch_V1_WatchRevocationsRequest, response: RPCWriter<Vouch_V1_RevocationEvent>,
                                 context: ServerContext) async throws {
        // Subscribe before reading the backlog so nothing revoked in between is missed;
        // sequence numbers drop the duplicates.
        let live = authority.revocations.watch()
        // A watcher that followed another replica of a shared store may be ahead of what this one
        // has read so far: read up to the store's present before judging.
        if request.afterSequence > authority.revocations.latestSequence { try await authority.catchUpRevocations() }
        // A watcher claiming to be ahead of this CA holds a sequence a fake CA gave it, which would
        // silence the stream for good: it starts over.
        let resume = request.afterSequence > authority.revocations.latestSequence ? 0 : request.afterSequence
        var last = resume
        let now = authority.now
        for record in try await authority.revocations(afterSequence: last)
        where resume > 0 || record.notAfter > now {
            try await response.write(Vouch_V1_RevocationEvent(record, issuer: authority.issuerSerial(of: record)))
            last = max(last, record.sequence)
        }
        // The live stream is in sequence order without gaps (see RevocationRegistry), from before the backlog's read.
        for await record in live where record.sequence > last {
            try await response.write(Vouch_V1_RevocationEvent(record, issuer: authority.issuerSerial(of: record)))
            last = record.sequence
        }
    }
}
