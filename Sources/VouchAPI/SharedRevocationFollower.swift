import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import VouchAuthority
import VouchHTTP

/// Brings revocations that other CA replicas commit to a shared store into this replica's registry,
/// and so to its TLS handshakes, open connections, WatchRevocations streams and CRL: within moments
/// of their commit, as the store announces it, and none ever missed.
///
/// It reads the store after the registry's `readThrough` whenever the store announces a commit,
/// right after each (re)connection of the listening session (what was committed while it was down),
/// and every `safetyInterval` in case an announcement was lost. The session reconnects with capped
/// exponential backoff; an outage is logged once when it starts and once when it ends.
public struct SharedRevocationFollower: Service {
    let authority: CertificateAuthority
    let feed: any RevocationChangeFeed
    let logger: Logger
    let safetyInterval: Duration
    /// How often the listening session is checked; one silent for as long again is replaced, so a
    /// session lost without a word leaves revocations to the periodic read for seconds, not longer.
    let heartbeat: Duration
    let firstRetry: Duration
    let maximumRetry: Duration
    /// Told when the store announces an issuer change on the same session (`IssuerFollower` reads it).
    let issuersChanged: @Sendable () -> Void

    public init(authority: CertificateAuthority, feed: any RevocationChangeFeed, logger: Logger,
                safetyInterval: Duration = .seconds(15), heartbeat: Duration = .seconds(2),
                firstRetry: Duration = .milliseconds(200), maximumRetry: Duration = .seconds(5),
                issuersChanged: @escaping @Sendable () -> Void = {}) {
        self.issuersChanged = issuersChanged
        self.heartbeat = heartbeat
        self.authority = authority
        self.feed = feed
        self.logger = logger
        self.safetyInterval = safetyInterval
        self.firstRetry = firstRetry
        self.maximumRetry = maximumRetry
    }

    public func run() async {
        logger.info("shared store: following revocations of other replicas",
                    metadata: ["safety_interval": "\(safetyInterval)"])
        // Requests to read: one pending is enough, however many announcements came meanwhile.
        let (reads, requestRead) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        await withDiscardingTaskGroup { group in
            group.addTask { await readWhenAsked(reads) }
            group.addTask { await listen(requestRead: requestRead) }
            group.addTask {
                while (try? await Task.sleep(for: safetyInterval)) != nil { requestRead.yield() }
            }
            await untilShutdown()
            group.cancelAll()
        }
    }

    /// One read at a time, each retried with backoff until it succeeds.
    private func readWhenAsked(_ reads: AsyncStream<Void>) async {
        let outage = Outage()
        for await _ in reads {
            while !Task.isCancelled {
                do {
                    try await authority.catchUpRevocations()
                    if let ended = outage.ended() {
                        logger.notice("shared store: reading revocations again", metadata: ["after": "\(ended)"])
                    }
                    outage.settled()
                    break
                } catch {
                    if outage.began() {
                        logger.warning("shared store: cannot read revocations; retrying", metadata: ["reason": "\(error)"])
                    }
                    try? await Task.sleep(for: backoff(after: outage.failures))
                }
            }
        }
    }

    /// Keeps one listening session open, reconnecting after any failure. The backoff starts afresh
    /// only after a session that lasted `settleTime`: one dropped as soon as it listens (a proxy,
    /// a script ending it) is retried at a growing interval, not five times a second.
    private func listen(requestRead: AsyncStream<Void>.Continuation) async {
        let outage = Outage()
        let registry = authority.revocations
        while !Task.isCancelled {
            let opened = Mutex<ContinuousClock.Instant?>(nil)
            do {
                try await feed.followRevocations(heartbeat: heartbeat, listening: { [logger] in
                    opened.withLock { $0 = .now }
                    if let ended = outage.ended() {
                        logger.notice("shared store: listening for revocations again", metadata: ["after": "\(ended)"])
                    }
                    // What was committed while no one listened.
                    requestRead.yield()
                }, announced: { sequence in
                    if sequence > registry.readThrough { requestRead.yield() }
                }, issuersChanged: { [issuersChanged] _ in issuersChanged() })
            } catch {
                if let opened = opened.withLock({ $0 }), ContinuousClock.now - opened >= Self.settleTime { outage.settled() }
                if outage.began() {
                    logger.warning("shared store: not listening for revocations; reconnecting (the periodic read continues)",
                                   metadata: ["reason": "\(error)"])
                }
            }
            if Task.isCancelled { return }
            try? await Task.sleep(for: backoff(after: outage.failures))
        }
    }

    /// How long a listening session must last for the reconnection backoff to start afresh.
    static let settleTime: Duration = .seconds(5)

    private func backoff(after failures: Int) -> Duration {
        min(maximumRetry, firstRetry * (1 << min(max(failures - 1, 0), 16)))
    }
}

/// Consecutive failures, so a long outage is reported once when it begins and once when it ends.
private final class Outage: Sendable {
    private struct State {
        var failures = 0
        var since: ContinuousClock.Instant?
        /// Whether the outage's start was reported (its end is reported once too).
        var reported = false
    }

    private let state = Mutex(State())

    var failures: Int { state.withLock { $0.failures } }

    /// Counts a failure; true for the first of an outage.
    func began() -> Bool {
        state.withLock { state in
            state.failures += 1
            if state.since == nil { state.since = .now }
            defer { state.reported = true }
            return !state.reported
        }
    }

    /// Working again: resets the backoff.
    func settled() { state.withLock { $0.failures = 0 } }

    /// Ends an outage if there was one, with a description of how long it lasted. The count of
    /// failures stays until `settled()`.
    func ended() -> String? {
        state.withLock { state in
            guard let since = state.since else { return nil }
            defer { (state.since, state.reported) = (nil, false) }
            let elapsed = (ContinuousClock.now - since).components
            let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
            return String(format: "%.1fs, %d failed attempts", seconds, state.failures)
        }
    }
}
