import Foundation
import Logging
import ServiceLifecycle
import VouchCrypto
import VouchHTTP

/// Keeps the server signing through its PKCS#11 token across the token's failures. While the
/// token works it is probed every `probeInterval` (a key attribute read, no signature), so a
/// token that fails while nothing signs is noticed too. A failed sign marks the token failed
/// itself; the watch reads the status every `statusCheck`, so recovery starts at once, not at the
/// next probe. While failed, `recover()` (module restarted, login, keys found again and checked)
/// is tried with a backoff from `firstRetry` to `longestRetry`; meanwhile issuing, CRL and OCSP
/// signing answer unavailable. A PIN the token refuses on that login is never tried again: a
/// hardware token locks after a few failures, so only a restart with the right PIN helps.
public struct TokenWatch: Service {
    public struct Timing: Sendable {
        public var probeInterval: Duration = .seconds(10)
        public var statusCheck: Duration = .milliseconds(250)
        public var firstRetry: Duration = .seconds(1)
        public var longestRetry: Duration = .seconds(10)

        public init() {}
    }

    let token: PKCS11Token
    let logger: Logger
    let timing: Timing

    public init(token: PKCS11Token, logger: Logger, timing: Timing = Timing()) {
        self.token = token
        self.logger = logger
        self.timing = timing
    }

    public func run() async {
        var probed = ContinuousClock.now
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            switch token.status {
            case .ok:
                if ContinuousClock.now - probed >= timing.probeInterval {
                    await blocking { token.probe() }
                    probed = .now
                    continue
                }
                guard await pause(timing.statusCheck) else { return }
            case .failed(let reason, let since):
                logger.error("PKCS#11 token \"\(token.label)\" failed: \(reason); issuing, CRL and OCSP signing answer unavailable until it is back")
                guard await recover(failedAt: since) else { return }
                probed = .now
            case .pinRefused:
                reportRefusedPIN()
                // Terminal: nothing more to do here, but returning would stop the whole server.
                await untilShutdown()
                return
            }
        }
    }

    /// Tries `recover()` until the token is back (true) or the server stops (false).
    private func recover(failedAt since: Date) async -> Bool {
        var delay = timing.firstRetry
        while true {
            switch await blocking({ token.recover() }) {
            case .ok:
                let seconds = String(format: "%.1f", Date().timeIntervalSince(since))
                logger.notice("PKCS#11 token \"\(token.label)\" is back after \(seconds) s")
                return true
            case .pinRefused:
                // The status loop reports it once and stops trying.
                return true
            case .failed(let reason, _):
                logger.debug("PKCS#11 token \"\(token.label)\" still failing", metadata: ["reason": "\(reason)", "retry_in": "\(delay)"])
            }
            guard await pause(delay) else { return false }
            delay = min(delay * 2, timing.longestRetry)
        }
    }

    private func reportRefusedPIN() {
        logger.critical("\(token.unhealthyReason ?? "PKCS#11 token \"\(token.label)\" refused the PIN"); issuing, CRL and OCSP signing answer unavailable")
    }

    /// Token calls block their thread (a recovery restarts the module: seconds on an unreachable
    /// network HSM), so they run on a thread of their own, never on Swift's few cooperative ones.
    private static let calls = DispatchQueue(label: "vouch.pkcs11-token-watch")

    @discardableResult
    private func blocking(_ call: @escaping @Sendable () -> PKCS11Token.Status) async -> PKCS11Token.Status {
        await withCheckedContinuation { done in Self.calls.async { done.resume(returning: call()) } }
    }

    /// Sleeps for `duration`; false when the server is stopping.
    private func pause(_ duration: Duration) async -> Bool {
        do {
            try await cancelOnShutdown { try await Task.sleep(for: duration) }
            return !Task.isCancelled
        } catch {
            return false
        }
    }
}
