import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VouchAuthority
import VouchHTTP

/// Makes this replica follow issuer changes (`vouch ca intermediate rotate`, `root prepare`,
/// `activate`, `retire`) without a restart: whenever the store's issuer generation is above the
/// one held, the authority reloads its issuers, the listener's pools follow, and a new signing
/// issuer gets the listener a certificate from it. The generation is read every `interval` on any
/// store (the only way on SQLite, where the CLI writes the database next to the running server),
/// and at once when a shared store announces a change. A replica lags by one interval at most:
/// harmless, since the previous issuer stays trusted until it is retired.
public struct IssuerFollower: Service {
    let authority: CertificateAuthority
    let store: any AuthorityStore
    /// Announcements of a shared store (`vouch_issuers`); nil: polling only.
    let announcements: AsyncStream<Void>?
    let logger: Logger
    let interval: Duration

    public init(authority: CertificateAuthority, store: any AuthorityStore, announcements: AsyncStream<Void>? = nil, logger: Logger,
                interval: Duration = .seconds(2)) {
        self.authority = authority
        self.store = store
        self.announcements = announcements
        self.logger = logger
        self.interval = interval
    }

    public func run() async {
        // Requests to check: one pending is enough, however many came meanwhile.
        let (checks, requestCheck) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await withDiscardingTaskGroup { group in
            // Whoever reloads (this follower, or a caller ahead of this replica), each new set is told once.
            group.addTask { await reportChanges() }
            group.addTask { await checkWhenAsked(checks) }
            group.addTask {
                while (try? await Task.sleep(for: interval)) != nil { requestCheck.yield() }
            }
            if let announcements {
                group.addTask {
                    for await _ in announcements { requestCheck.yield() }
                }
            }
            await untilShutdown()
            group.cancelAll()
        }
    }

    private func checkWhenAsked(_ checks: AsyncStream<Void>) async {
        var failing = false
        for await _ in checks {
            do {
                // Cheap: one row. The reload reads every issuer and loads new keys; while the active
                // key could not be loaded (not copied here yet), it tries again each time.
                let held = authority.issuerSet
                if try await store.issuerGeneration() > held.generation || held.signingIssuerWarning != nil {
                    try await authority.reloadIssuers()
                }
                if failing { logger.notice("issuers: reading the issuer generation again") }
                failing = false
            } catch {
                if !failing {
                    logger.warning("issuers: cannot read the issuers; signing with the ones held, retrying",
                                   metadata: ["reason": "\(error)"])
                }
                failing = true
            }
        }
    }

    /// Logs each new issuer set and keeps `vouch_ca_signing_issuer_info` on the signing issuer.
    private func reportChanges() async {
        var previous = authority.issuerSet
        CAGauges.recordSigningIssuer(serial: previous.active.serial)
        if let warning = previous.signingIssuerWarning { logger.warning("\(warning)", metadata: ["generation": "\(previous.generation)"]) }
        for await set in authority.issuerUpdates() where set.generation != previous.generation || set.active.serial != previous.active.serial {
            if set.active.serial != previous.active.serial {
                logger.notice("switched signing to intermediate \(set.active.serial) (generation \(set.generation))",
                              metadata: ["previous": "\(previous.active.serial)"])
                CAGauges.recordSigningIssuer(serial: set.active.serial)
            } else {
                logger.info("issuers changed (generation \(set.generation)); signing with intermediate \(set.active.serial)")
            }
            // Once per generation: a replica that cannot load the active key says so each time it moves.
            if let warning = set.signingIssuerWarning { logger.warning("\(warning)", metadata: ["generation": "\(set.generation)"]) }
            // A root CRL not signed by its root (a database writer's) is not served: say so.
            for line in set.rootCRLWarnings { logger.warning("\(line)", metadata: ["generation": "\(set.generation)"]) }
            previous = set
        }
    }
}
