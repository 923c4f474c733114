import Foundation
import GRPCCore
import Logging
import Metrics
import Synchronization
import VouchAPI
import VouchCrypto
import VouchFiles
import VouchTLS
import X509

/// Keeps the agent's trust files in step with the CA's trust bundle while it runs: follows
/// WatchTrustBundle (failing over across replicas like the revocation stream), takes each bundle
/// through `AgentTrust.acceptTrustUpdate`, writes bundle.pem, endorsements.pem,
/// ca_intermediates.pem and chain.pem together, reloads the listener's trust for new handshakes,
/// and tells the CA which bundle it holds (ConfirmTrustBundle) after each accepted bundle, when
/// the stream opens and after each rotation. A bundle adding a root no trusted root endorsed is
/// refused, logged and counted, and changes no file.
public final class TrustFollower: Sendable {
    private enum Work: Sendable {
        case bundle(TrustBundleUpdate)
        case streamOpened
        case identityChanged
    }

    private struct Held {
        /// The generation of the last bundle accepted; 0 until one arrives (after a start too: the
        /// CA then sends its current bundle at once).
        var generation: Int64 = 0
        /// The last bundle accepted, applied again after each new certificate: a root kept for the
        /// previous one may go, and a new enrollment wrote bundle.pem from --ca-bundle.
        var last: TrustBundleUpdate?
        /// Roots (serials) kept for the agent's own certificate for which an early renewal was asked:
        /// asked once, so a CA still signing under such a root cannot start a renewal loop.
        var renewalAskedFor: Set<String> = []
        /// The last confirmation the CA took: (generation, bundle SHA-256, own serial).
        var confirmed: (Int64, [UInt8], String)?
        /// Bundles refused since the start (also counted in `vouch_agent_trust_updates_refused_total`).
        var refused = 0
    }

    let files: IdentityFiles
    let trust: AgentTrust
    let replicas: CAReplicas
    let source: any TrustBundleSource
    let clock: any AgentClock
    let state: AgentState
    let logger: Logger
    private let held = Mutex(Held())
    private let work: AsyncStream<Work>
    private let enqueue: AsyncStream<Work>.Continuation
    /// A CA with a stolen key could send refused bundles without end: their lines are rate-limited.
    private let refusalLog = RateLimitedLog(burst: 5, perSecond: 0.1)
    let refusedCounter = Counter(label: "vouch_agent_trust_updates_refused_total")
    let generationGauge = Gauge(label: "vouch_agent_trust_generation")
    /// Asks the keeper to renew soon: the agent's own certificate chains only to a root the CA dropped.
    let renewSoon: @Sendable () -> Void
    /// Told which kinds of file an accepted bundle changed on disk (the hooks).
    let onFilesChanged: @Sendable (FileChange) -> Void

    init(files: IdentityFiles, trust: AgentTrust, replicas: CAReplicas, source: any TrustBundleSource, clock: any AgentClock,
         state: AgentState, logger: Logger, renewSoon: @escaping @Sendable () -> Void = {},
         onFilesChanged: @escaping @Sendable (FileChange) -> Void = { _ in }) {
        self.files = files
        self.trust = trust
        self.replicas = replicas
        self.source = source
        self.clock = clock
        self.state = state
        self.logger = logger
        self.renewSoon = renewSoon
        self.onFilesChanged = onFilesChanged
        // Newer bundles supersede older ones, so a backlog can drop the oldest.
        (work, enqueue) = AsyncStream.makeStream(of: Work.self, bufferingPolicy: .bufferingNewest(16))
    }

    /// The generation of the last bundle accepted (0: none since the start).
    var generation: Int64 { held.withLock { $0.generation } }

    /// Bundles refused since the start.
    var refusedCount: Int { held.withLock { $0.refused } }

    /// The agent's certificate changed (rotation, new enrollment): confirm again under the new serial.
    func identityChanged() { enqueue.yield(.identityChanged) }

    /// Reads bundle.pem into the status (its hash and root serials).
    func noteHeldBundle() {
        guard let data = FileManager.default.contents(atPath: files.bundle) else { return }
        let serials = ((try? Certificate.all(inPEM: String(decoding: data, as: UTF8.self))) ?? []).map(\.serialHex)
        let generation = self.generation
        state.update {
            $0.trustGeneration = generation
            $0.bundleSHA256 = sha256(Array(data))
            $0.rootSerials = serials
        }
        generationGauge.record(generation)
    }

    // MARK: Applying

    /// Takes bundles, stream openings and rotations one at a time, for as long as the agent runs.
    /// `reloadListener` makes the local listener use the files just written for new handshakes.
    func applyForever(reloadListener: @escaping @Sendable () throws -> Void) async throws {
        noteHeldBundle()
        for await item in work {
            try Task.checkCancellation()
            switch item {
            case .bundle(let update):
                await apply(update, reloadListener: reloadListener)
            case .streamOpened:
                await confirm(always: true)
            case .identityChanged:
                noteHeldBundle()
                if let again = held.withLock({ $0.last }) {
                    await apply(again, reloadListener: reloadListener)
                } else {
                    await confirm(always: false)
                }
            }
        }
    }

    /// Checks `update`, and when accepted writes it, reloads the listener and confirms it.
    func apply(_ update: TrustBundleUpdate, reloadListener: @Sendable () throws -> Void) async {
        let heldGeneration = generation
        if update.generation < heldGeneration {
            // The CA sends an older generation only to an agent ahead of its database (one that
            // followed a fake CA, or a restored database): its present is what counts. The rule
            // below applies all the same.
            logger.notice("the CA's trust bundle generation is lower than the one held; taking the CA's",
                          metadata: ["generation": "\(update.generation)", "held": "\(heldGeneration)"])
        }
        let accepted: AcceptedBundle
        // Servers reload for bundle.pem and chain.pem, and for crl.pem (the roots' CRLs); the other
        // trust files are the agent's own.
        let probe = FileChangeProbe([(.bundle, files.bundle), (.bundle, files.chain)] + (files.path(.crl).map { [(.crl, $0)] } ?? []))
        do {
            accepted = try await acceptAndWrite(update)
        } catch let refused as TrustUpdateRefused {
            refuse("\(refused)", update: update)
            return
        } catch let rejected as IdentityRejected {
            refuse("\(rejected)", update: update)
            return
        } catch {
            logger.warning("could not write a trust bundle update; keeping the files held",
                           metadata: ["generation": "\(update.generation)", "error": "\(describe(error))"])
            return
        }
        if accepted.rootCRLsChanged {
            logger.info("root CRL updated", metadata: ["generation": "\(update.generation)"])
        }
        if accepted.changed {
            do {
                try reloadListener()
            } catch {
                logger.warning("could not reload the listener with the new trust bundle", metadata: ["error": "\(describe(error))"])
            }
            logger.info("trust bundle updated", metadata: [
                "generation": "\(update.generation)", "roots": "\(accepted.roots.map(\.serialHex).joined(separator: ","))",
                "added": "\(accepted.added.map(\.serialHex).joined(separator: ","))",
                "removed": "\(accepted.removed.map(\.serialHex).joined(separator: ","))",
                "intermediates": "\(accepted.caIntermediates.count)"])
        }
        onFilesChanged(probe.changes())
        let kept = Set(accepted.keptForOwnCertificate.map(\.serialHex))
        let askRenewal = held.withLock { held in
            held.generation = update.generation
            held.last = update
            defer { held.renewalAskedFor.formUnion(kept) }
            return !kept.isSubset(of: held.renewalAskedFor)
        }
        noteHeldBundle()
        if askRenewal {
            logger.notice("keeping a root the CA dropped until the agent's own certificate renews under another", metadata: [
                "roots": "\(kept.sorted().joined(separator: ","))", "serial": "\(state.current.serial)"])
            renewSoon()
        }
        await confirm(always: false)
    }

    /// Checks `update` against the files held and writes the result, all four files or none; checked
    /// again when a renewal rewrote the identity meanwhile (both write chain.pem).
    private func acceptAndWrite(_ update: TrustBundleUpdate) async throws -> AcceptedBundle {
        while true {
            let before = try trust.heldTrust()
            var accepted = try await trust.acceptTrustUpdate(update, held: before, now: clock.now)
            let written = try IdentityWriter.serialized {
                guard try trust.heldTrust() == before else { return false }
                // Root CRLs are checked against the roots the update leaves (a new root's first CRL comes with it).
                let intake = RootCRLIntake(files: files)
                let rootCRLs = intake.newer(update.rootCRLs, roots: accepted.roots, now: clock.now)
                for reason in rootCRLs.refused { logger.notice("\(reason)", metadata: ["generation": "\(update.generation)"]) }
                var set = accepted.changed ? try accepted.fileSet(files) : []
                set += rootCRLs.files.map { ($0.path, $0.der, 0o644) }
                // A removed root's CRL leaves crl.pem in the same write; its file goes after it.
                let gone = Set(accepted.removed.map(intake.path(for:)))
                if !set.isEmpty {
                    try AtomicFile.writeAll(try DerivedFiles(files: files, logger: logger).completing(set, removing: gone))
                    for path in gone { unlink(path) }
                }
                accepted.rootCRLsChanged = !rootCRLs.files.isEmpty
                return true
            }
            if written { return accepted }
        }
    }

    private func refuse(_ reason: String, update: TrustBundleUpdate) {
        refusedCounter.increment()
        held.withLock { $0.refused += 1 }
        guard let suppressed = refusalLog.admit(now: clock.now) else { return }
        var metadata: Logger.Metadata = ["generation": "\(update.generation)"]
        if suppressed > 0 { metadata["not_logged"] = "\(suppressed)" }
        logger.notice("\(reason)", metadata: metadata)
    }

    /// ConfirmTrustBundle with the generation and bundle.pem held; skipped when the CA already took
    /// this very confirmation, unless `always` (a stream just opened). A failure is only logged: the
    /// next rotation or stream opening confirms again.
    private func confirm(always: Bool) async {
        let generation = self.generation
        guard generation > 0, let data = FileManager.default.contents(atPath: files.bundle) else { return }
        let digest = sha256(Array(data)), serial = state.current.serial
        if !always, let last = held.withLock({ $0.confirmed }), last.0 == generation, last.1 == digest, last.2 == serial { return }
        do {
            try await replicas.call("ConfirmTrustBundle") { try await source.confirm($0, generation: generation, bundleSHA256: digest) }
            held.withLock { $0.confirmed = (generation, digest, serial) }
        } catch {
            logger.notice("could not confirm the trust bundle to the CA", metadata: ["generation": "\(generation)", "error": "\(describe(error))"])
        }
    }

    // MARK: Stream

    /// Follows WatchTrustBundle after the generation held. When the stream to a replica fails
    /// without an answer it reconnects at once to the next replica; once every replica failed in a
    /// row, and after a refusal, it backs off (as `RevocationFollower.watchForever`).
    func watchForever(schedule: RenewalSchedule) async throws {
        var failover = StreamFailover(replicas: replicas, schedule: schedule, call: "WatchTrustBundle")
        var address = replicas.active
        var saidUnimplemented = false
        while !Task.isCancelled {
            let opened = StreamOpened()
            do {
                try await source.watch(address, afterGeneration: generation, onOpen: { [replicas, address, clock, enqueue] in
                    opened.set(at: clock.now)
                    replicas.answered(by: address)
                    enqueue.yield(.streamOpened)
                }, onBundle: { [enqueue] in enqueue.yield(.bundle($0)) })
                failover.ended()
                address = moveStream(from: address, because: "the replica ended it")
                try await clock.sleep(for: 1)
            } catch let error where isShutdown(error) {
                throw CancellationError()
            } catch let error as RPCError where error.code == .unimplemented {
                // A CA older than trust bundle streams: said once, then asked again now and then.
                if !saidUnimplemented {
                    logger.notice("the CA does not send trust bundle updates (an older version); bundle.pem changes only when enrolling",
                                  metadata: ["address": "\(address)"])
                    saidUnimplemented = true
                }
                try await clock.sleep(for: schedule.maximumBackoff)
            } catch {
                switch failover.failed(error, at: address, openedAt: opened.at, now: clock.now) {
                case .moveOn:
                    address = moveStream(from: address, because: describe(error))
                case .backOff(let delay, let nextReplica):
                    logger.notice("trust bundle stream down; retrying",
                                  metadata: ["error": "\(describe(error))", "retry_in": "\(String(format: "%.1f", delay))s"])
                    if nextReplica { address = replicas.address(after: address) }
                    try await clock.sleep(for: delay)
                }
            }
        }
    }

    private func moveStream(from address: HostPort, because reason: String) -> HostPort {
        let next = replicas.address(after: address)
        if next != address {
            logger.notice("trust bundle stream moves to the next CA replica", metadata: [
                "from": "\(address)", "to": "\(next)", "after_generation": "\(generation)", "reason": "\(reason)"])
        }
        return next
    }
}
