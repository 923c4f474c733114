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
    /// What this replica holds.
    public struct Held: Sendable, Equatable {
        public var generation: Int64
        /// The intermediate this replica signs with.
        public var signingSerial: String
        /// Why it is not the stored active intermediate (its key cannot be loaded here), if so.
        public var warning: String?

        public init(generation: Int64, signingSerial: String, warning: String? = nil) {
            self.generation = generation
            self.signingSerial = signingSerial
            self.warning = warning
        }
    }

    let storeGeneration: @Sendable () async throws -> Int64
    let held: @Sendable () -> Held
    let reload: @Sendable () async throws -> Void
    /// Announcements of a shared store (`vouch_issuers`); nil: polling only.
    let announcements: AsyncStream<Void>?
    /// Told after every reload (the listener reloads its pools) and whether the signing issuer changed.
    let onReload: @Sendable (_ signingChanged: Bool) -> Void
    let logger: Logger
    let interval: Duration

    public init(storeGeneration: @escaping @Sendable () async throws -> Int64, held: @escaping @Sendable () -> Held,
                reload: @escaping @Sendable () async throws -> Void, announcements: AsyncStream<Void>? = nil,
                onReload: @escaping @Sendable (_ signingChanged: Bool) -> Void, logger: Logger, interval: Duration = .seconds(2)) {
        self.storeGeneration = storeGeneration
        self.held = held
        self.reload = reload
        self.announcements = announcements
        self.onReload = onReload
        self.logger = logger
        self.interval = interval
    }

    public func run() async {
        let start = held()
        CAGauges.recordSigningIssuer(serial: start.signingSerial)
        if let warning = start.warning { logger.warning("\(warning)", metadata: ["generation": "\(start.generation)"]) }
        // Requests to check: one pending is enough, however many came meanwhile.
        let (checks, requestCheck) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await withDiscardingTaskGroup { group in
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
                try await check()
                if failing { logger.notice("issuers: reading the issuer generation again") }
                failing = false
            } catch {
                if !failing {
                    logger.warning("issuers: cannot read the issuer generation; signing with the issuers held, retrying",
                                   metadata: ["reason": "\(error)"])
                }
                failing = true
            }
        }
    }

    /// Reloads when the store moved past the generation held.
    func check() async throws {
        let before = held()
        guard try await storeGeneration() > before.generation else { return }
        try await reload()
        let after = held()
        guard after.generation != before.generation else { return }
        let signingChanged = after.signingSerial != before.signingSerial
        if signingChanged {
            logger.notice("switched signing to intermediate \(after.signingSerial) (generation \(after.generation))",
                          metadata: ["previous": "\(before.signingSerial)"])
            CAGauges.recordSigningIssuer(serial: after.signingSerial)
        } else {
            logger.info("issuers changed (generation \(after.generation)); signing with intermediate \(after.signingSerial)")
        }
        // Once per generation: a replica that cannot load the active key says so each time it moves.
        if let warning = after.warning { logger.warning("\(warning)", metadata: ["generation": "\(after.generation)"]) }
        onReload(signingChanged)
    }
}

extension IssuerFollower {
    /// Follows `store` for `authority`: the listener (pools and certificate) follows through
    /// `authority.issuerUpdates()`.
    public init(authority: CertificateAuthority, store: any AuthorityStore, announcements: AsyncStream<Void>? = nil, logger: Logger,
                interval: Duration = .seconds(2)) {
        self.init(storeGeneration: { try await store.issuerGeneration() },
                  held: {
                      let set = authority.issuerSet
                      return Held(generation: set.generation, signingSerial: set.active.serial, warning: set.signingIssuerWarning)
                  },
                  reload: { try await authority.reloadIssuers() }, announcements: announcements,
                  onReload: { _ in }, logger: logger, interval: interval)
    }
}
