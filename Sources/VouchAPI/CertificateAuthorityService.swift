import Foundation
import GRPCCore
import VouchAuthority
import VouchCrypto

/// `vouch.v1.CertificateAuthority` over the authority core.
public struct CertificateAuthorityService: Vouch_V1_CertificateAuthority.SimpleServiceProtocol {
    let authority: CertificateAuthority
    /// The confirmation last stored per serial, so an agent confirming again costs no write.
    let confirmations = RecentConfirmations()

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
        response.revokedAt = record.revokedAt.unixSeconds
        response.sequence = record.sequence
        return response
    }

    public func getTrustBundle(request: Vouch_V1_TrustBundleRequest, context: ServerContext) async throws -> Vouch_V1_TrustBundle {
        Vouch_V1_TrustBundle(authority.issuerSet)
    }

    /// The current bundle at once when its generation is above the caller's, then one message per
    /// change, until the server shuts down (which ends `issuerUpdates()`).
    public func watchTrustBundle(request: Vouch_V1_WatchTrustBundleRequest, response: RPCWriter<Vouch_V1_TrustBundle>,
                                 context: ServerContext) async throws {
        let updates = authority.issuerUpdates()
        var after = request.afterGeneration
        // A caller that followed another replica may be ahead of what this one holds: read the
        // store's present first. One still ahead of the store holds a generation a fake CA gave
        // it, which would silence the stream for good: it starts over.
        if after > authority.issuerSet.generation {
            try await authority.reloadIssuers()
            if after > authority.issuerSet.generation { after = 0 }
        }
        for await set in updates where set.isAdopted && set.generation > after {
            try await response.write(Vouch_V1_TrustBundle(set))
            after = set.generation
        }
    }

    public func confirmTrustBundle(request: Vouch_V1_TrustBundleConfirmation,
                                   context: ServerContext) async throws -> Vouch_V1_TrustBundleConfirmationResponse {
        guard request.bundleSha256.count == 32 else {
            throw AuthorityError(.invalidArgument, "bundle_sha256 must be a SHA-256 digest (32 bytes), not \(request.bundleSha256.count) bytes")
        }
        guard request.generation >= 0 else { throw AuthorityError(.invalidArgument, "generation must not be negative") }
        if request.generation > authority.issuerSet.generation {
            try await authority.reloadIssuers()
            guard request.generation <= authority.issuerSet.generation else {
                throw AuthorityError(.invalidArgument, "generation \(request.generation) is newer than the CA's (\(authority.issuerSet.generation))")
            }
        }
        let caller = RPCCaller.of(context)
        let confirmation = RecentConfirmations.Entry(generation: request.generation, bundleSHA256: Array(request.bundleSha256))
        guard let serial = caller.serial else { return Vouch_V1_TrustBundleConfirmationResponse() }
        try await confirmations.confirm(confirmation, serial: serial) {
            try await authority.recordTrustConfirmation(caller: caller, generation: confirmation.generation,
                                                        bundleSHA256: confirmation.bundleSHA256)
        }
        return Vouch_V1_TrustBundleConfirmationResponse()
    }

    public func getCRL(request: Vouch_V1_CRLRequest, context: ServerContext) async throws -> Vouch_V1_CRLResponse {
        // A root's serial: its stored CRL, signed offline (RootCRL.swift).
        if !request.issuer.isEmpty, let root = try await authority.rootCRL(serial: request.issuer) {
            var response = Vouch_V1_CRLResponse()
            response.issuer = root.root
            response.crl = Data(root.der)
            response.crlNumber = root.number
            if let crl = try? CertificateRevocationList(der: root.der) { response.thisUpdate = crl.thisUpdate.unixSeconds }
            response.nextUpdate = root.nextUpdate.unixSeconds
            return response
        }
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

extension Vouch_V1_TrustBundle {
    /// The bundle of an issuer set: roots that are not retired, intermediates for path building
    /// (not retired, and the cross certificates in use), endorsements, the generation and the
    /// intermediate that signs now.
    init(_ set: IssuerSet) {
        self.init()
        roots = set.rootsDER.map { Data($0) }
        intermediates = set.poolIntermediatesDER.map { Data($0) }
        endorsements = set.endorsementsDER.map { Data($0) }
        generation = set.generation
        activeIntermediate = Data(set.active.record.der)
        rootCrls = set.rootCRLs.map { Data($0.der) }
    }
}
