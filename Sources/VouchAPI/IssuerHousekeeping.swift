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
            await warnAboutRootCRLs()
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

    /// One line per root (not retired) whose CRL is missing (a CA made before root CRLs), dropped
    /// (not signed by the root), or expires within 30 days: servers that check CRLs for the whole
    /// chain refuse every client without a valid one. Each pass (hourly) logs again.
    public func warnAboutRootCRLs() async {
        let snapshot: IssuerSnapshot
        do {
            snapshot = try await store.issuers()
        } catch {
            logger.warning("cannot check the root CRLs", metadata: ["reason": "\(error)"])
            return
        }
        let (served, dropped) = snapshot.servedRootCRLs()
        let command = "vouch ca root crl --dir \(directory) --root-key <the root's key>"
        let consequence = "nginx, HAProxy and PostgreSQL with CRL checks refuse every client"
        for line in dropped { logger.warning("\(line)") }
        let servedRoots = Set(served.map(\.root))
        for root in snapshot.rootsWithoutCRL where !servedRoots.contains(root.serial) {
            logger.warning("root \(root.serial) has no CRL: run \(command); until then \(consequence)")
        }
        let now = now()
        for crl in served where crl.nextUpdate.timeIntervalSince(now) < RootCRL.warningWindow {
            let when = crl.nextUpdate > now ? "expires at" : "expired at"
            logger.warning("the CRL of root \(crl.root) \(when) \(crl.nextUpdate.formatted(.iso8601)): run \(command); after that \(consequence)")
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
