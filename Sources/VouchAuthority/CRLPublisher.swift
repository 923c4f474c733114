import Foundation
import Synchronization
import VouchCrypto

/// Keeps one issuer's signed CRL, listing the revoked certificates that issuer signed, and
/// regenerates it when a revocation happened or it is older than the refresh interval, so
/// readers never sign on every call.
actor CRLPublisher {
    private let store: any AuthorityStore
    private let issuerID: Int64
    private let signer: CertificateSigner
    private let registry: RevocationRegistry
    private let validity: TimeInterval
    private let refreshInterval: TimeInterval
    private var current: CRLSnapshot?
    /// Told once when the CRL cannot be signed again and the last one is served meanwhile.
    private let warn: @Sendable (String) -> Void
    /// Whether the last signing failed (and `warn` was told): told again only after a success.
    private var servingLast = false

    init(store: any AuthorityStore, issuerID: Int64, signer: CertificateSigner, registry: RevocationRegistry,
         validity: TimeInterval, refreshInterval: TimeInterval, warn: @escaping @Sendable (String) -> Void = { _ in }) {
        self.warn = warn
        self.store = store
        self.issuerID = issuerID
        self.signer = signer
        self.registry = registry
        self.validity = validity
        self.refreshInterval = refreshInterval
    }

    func snapshot(now: Date) async throws -> CRLSnapshot {
        let sequence = registry.latestSequence
        if let current, current.sequence >= sequence, now.timeIntervalSince1970 - current.thisUpdate < refreshInterval {
            return current
        }
        let (number, revocations) = try await store.nextCRLNumberAndRevocations(issuerID: issuerID)
        // Expired certificates fail validation anyway, so they leave the CRL (RFC 5280 3.3).
        let entries = revocations
            .filter { $0.notAfter > now }
            .compactMap { record in
                SerialNumber.bytes(fromHex: record.serial).map {
                    RevokedCertificateEntry(serial: $0, revokedAt: record.revokedAt, reason: record.reason)
                }
            }
        let nextUpdate = now.addingTimeInterval(validity)
        let der: [UInt8]
        do {
            der = try signer.makeCRL(entries: entries, number: number, thisUpdate: now, nextUpdate: nextUpdate)
        } catch let error as CryptoError where error.kind == .tokenUnavailable {
            // The last CRL signed stays valid until its nextUpdate: relying parties keep working
            // while the token is away, though a revocation since then is not in it yet.
            guard let current, current.nextUpdate > now.timeIntervalSince1970 else { throw AuthorityError(signing: error) }
            if !servingLast {
                servingLast = true
                warn("cannot sign the CRL of intermediate \(signer.certificate.serialHex): \(error.message); serving CRL "
                     + "number \(current.number) until the token is back (valid until "
                     + "\(Date(timeIntervalSince1970: current.nextUpdate).formatted(.iso8601)); revocations since are not in it)")
            }
            return current
        }
        servingLast = false
        let snapshot = CRLSnapshot(der: der, number: number, thisUpdate: now.timeIntervalSince1970.rounded(.down),
                                   nextUpdate: nextUpdate.timeIntervalSince1970.rounded(.down),
                                   issuer: signer.certificate.serialHex, sequence: sequence)
        current = snapshot
        return snapshot
    }
}

/// One `CRLPublisher` per publishing intermediate (see `IssuerSet.publishing`), kept across
/// issuer reloads so a switch does not re-sign every CRL.
final class CRLPublishers: Sendable {
    private let store: any AuthorityStore
    private let registry: RevocationRegistry
    private let validity: TimeInterval
    private let refreshInterval: TimeInterval
    private let publishers = Mutex<[String: CRLPublisher]>([:])
    private let warn: @Sendable (String) -> Void

    init(store: any AuthorityStore, registry: RevocationRegistry, validity: TimeInterval, refreshInterval: TimeInterval,
         warn: @escaping @Sendable (String) -> Void = { _ in }) {
        self.warn = warn
        self.store = store
        self.registry = registry
        self.validity = validity
        self.refreshInterval = refreshInterval
    }

    func publisher(for issuer: SigningIssuer) -> CRLPublisher {
        publishers.withLock { publishers in
            if let existing = publishers[issuer.serial] { return existing }
            let publisher = CRLPublisher(store: store, issuerID: issuer.record.id, signer: issuer.signer, registry: registry,
                                         validity: validity, refreshInterval: refreshInterval, warn: warn)
            publishers[issuer.serial] = publisher
            return publisher
        }
    }

    /// Forgets the publishers of issuers that no longer publish.
    func keep(only issuers: [SigningIssuer]) {
        let serials = Set(issuers.map(\.serial))
        publishers.withLock { $0 = $0.filter { serials.contains($0.key) } }
    }
}
