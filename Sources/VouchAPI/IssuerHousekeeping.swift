import Foundation
import Logging
import ServiceLifecycle
import VouchAuthority

/// A server's slow chores around its issuers. At start, it names the admin certificates that
/// need `vouch ca admin-cert` (expiring within 30 days, or chaining to a retiring root): nothing
/// else renews them. Then, at start and every `interval` (an hour), a retiring intermediate with
/// no unexpired certificate left becomes retired, as `ca intermediate rotate` and `root status`
/// do it, so it leaves the listener's pools and the trust bundle without an operator. Replicas
/// race harmlessly: the change is generation-checked and a loser tries again next time.
public struct IssuerHousekeeping: Service {
    let store: any AuthorityStore
    let adminIDs: Set<String>
    /// The CA directory, for the command the warnings name.
    let directory: String
    let logger: Logger
    let interval: Duration
    let now: @Sendable () -> Date

    public init(store: any AuthorityStore, adminIDs: Set<String>, directory: String, logger: Logger,
                interval: Duration = .seconds(3600), now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.adminIDs = adminIDs
        self.directory = directory
        self.logger = logger
        self.interval = interval
        self.now = now
    }

    public func run() async {
        await warnAboutAdminCertificates()
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            await retireIdleIntermediates()
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                return
            }
        }
    }

    /// One log line per admin certificate that needs renewing.
    public func warnAboutAdminCertificates() async {
        let warnings: [IssuerOperations.AdminCertificateWarning]
        do {
            warnings = try await operations.adminCertificateWarnings()
        } catch {
            logger.warning("cannot check the admin certificates", metadata: ["reason": "\(error)"])
            return
        }
        for warning in warnings {
            let certificate = warning.certificate
            let why = switch warning.reason {
            case .expiring: "expires at \(certificate.notAfter.formatted(.iso8601))"
            case .retiringRoot(let root): "chains to root \(root), which is retiring"
            }
            logger.warning("""
                admin certificate \(certificate.serial) of \(certificate.spiffeID) \(why): renew it with vouch ca admin-cert \
                --dir \(directory) --spiffe-id \(certificate.spiffeID) --out <the directory of its admin.pem>
                """)
        }
    }

    /// One pass: retiring intermediates with no unexpired certificate become retired.
    public func retireIdleIntermediates() async {
        do {
            for retired in try await operations.retireIdleIntermediates(by: "server housekeeping") {
                logger.notice("retired intermediate \(retired.serial): no unexpired certificate left")
            }
        } catch {
            logger.warning("issuer housekeeping: cannot retire idle intermediates; trying again at the next pass",
                           metadata: ["reason": "\(error)"])
        }
    }

    private var operations: IssuerOperations { IssuerOperations(store: store, now: now(), adminIDs: adminIDs) }
}
