import Foundation
import Logging
import VouchConnectionLimits
import VouchTLS

/// The agent's SPIFFE Workload API (`--workload-api`): what it hands out follows the files on
/// disk, read again after each enrollment, rotation, trust bundle or CRL change, and withdrawn
/// when the certificate expires or is revoked.
final class WorkloadAPI: Sendable {
    let configuration: WorkloadAPIConfiguration?
    let files: IdentityFiles
    let clock: any AgentClock
    let logger: Logger
    let board = WorkloadAPIBoard()
    private let changes = WakeSignal()

    init(configuration: WorkloadAPIConfiguration?, files: IdentityFiles, clock: any AgentClock, logger: Logger) {
        self.configuration = configuration
        self.files = files
        self.clock = clock
        self.logger = logger
    }

    /// The identity files, the trust bundle or a CRL changed on disk.
    func changed() { changes.signal() }

    /// The server, listening, when --workload-api is given; until the first identity it answers Unavailable.
    func start(limits: ListenerLimits) async throws -> WorkloadAPIServer? {
        guard let configuration else { return nil }
        return try await WorkloadAPIServer.start(configuration, board: board, limits: limits, logger: logger)
    }

    /// Publishes the identity on disk, then again at each change and at the certificate's expiry.
    func followIdentity(isRevoked: @escaping @Sendable (String) -> Bool) async throws {
        while !Task.isCancelled {
            let expiry = refresh(isRevoked: isRevoked)
            try await withThrowingTaskGroup(of: Void.self) { group in
                if let expiry { group.addTask { [clock] in try await clock.sleep(until: expiry) } }
                group.addTask { [changes] in await changes.wait() }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    /// Reads the files and publishes what they allow; when the certificate expires, if it is served.
    @discardableResult
    func refresh(isRevoked: (String) -> Bool) -> Date? {
        let material: WorkloadAPIMaterial
        do {
            material = try WorkloadAPIMaterial(try files.load())
        } catch {
            // Kept: the files are written one by one, and the next change event reads them again.
            logger.warning("workload API: could not read the identity files; keeping what it serves", metadata: ["error": "\(error)"])
            return nil
        }
        let withdrawal: String? = if material.notAfter <= clock.now {
            "the agent's certificate \(material.serial) expired at \(material.notAfter)"
        } else if isRevoked(material.serial) {
            "the agent's certificate \(material.serial) was revoked"
        } else {
            nil
        }
        guard let withdrawal else {
            board.publish(.serving(material))
            return material.notAfter
        }
        if board.current != .withdrawn(withdrawal) {
            logger.notice("workload API: withdrawing the identity from workloads", metadata: ["reason": "\(withdrawal)"])
        }
        board.publish(.withdrawn(withdrawal))
        return nil
    }
}
