import Foundation
import VouchCrypto

/// Keeps one signed CRL and regenerates it when a revocation happened or it
/// is older than the refresh interval, so readers never sign on every call.
actor CRLPublisher {
    private let store: any AuthorityStore
    private let signer: CertificateSigner
    private let registry: RevocationRegistry
    private let validity: TimeInterval
    private let refreshInterval: TimeInterval
    private var current: CRLSnapshot?

    init(store: any AuthorityStore, signer: CertificateSigner, registry: RevocationRegistry,
         validity: TimeInterval, refreshInterval: TimeInterval) {
        self.store = store
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
        let (number, revocations) = try await store.nextCRLNumberAndRevocations()
        // Expired certificates fail validation anyway, so they leave the CRL (RFC 5280 3.3).
        let entries = revocations
            .filter { $0.notAfter > now }
            .compactMap { record in
                SerialNumber.bytes(fromHex: record.serial).map {
                    RevokedCertificateEntry(serial: $0, revokedAt: record.revokedAt, reason: record.reason)
                }
            }
        let nextUpdate = now.addingTimeInterval(validity)
        let der = try signer.makeCRL(entries: entries, number: number, thisUpdate: now, nextUpdate: nextUpdate)
        let snapshot = CRLSnapshot(der: der, number: number, thisUpdate: now.timeIntervalSince1970.rounded(.down),
                                   nextUpdate: nextUpdate.timeIntervalSince1970.rounded(.down), sequence: sequence)
        current = snapshot
        return snapshot
    }
}
