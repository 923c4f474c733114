import Foundation
import Logging
import ServiceLifecycle
import VouchAuthority
import VouchHTTP

/// Signs an audit checkpoint at start, every `interval` when the audit head moved, and once more
/// at graceful shutdown. Each one is stored and logged as one line, so copies leave the database.
/// Put it first in the service group: groups stop services in reverse order, so it stops after
/// the listeners have drained and its last checkpoint covers their last events.
public struct AuditCheckpointService: Service {
    let checkpointer: AuditCheckpointer
    let interval: Duration
    let logger: Logger

    public init(checkpointer: AuditCheckpointer, interval: Duration, logger: Logger) {
        self.checkpointer = checkpointer
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        await checkpointIfMoved()
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            try? await cancelOnShutdown { try await Task.sleep(for: interval) }
            if Task.isCancelled { return }
            await checkpointIfMoved()
        }
    }

    private func checkpointIfMoved() async {
        do {
            if let checkpoint = try await checkpointer.checkpointIfMoved() {
                logger.info("audit checkpoint", metadata: ["row": "\(checkpoint.rowID)", "checkpoint": "\(checkpoint.text)"])
            }
        } catch {
            logger.error("audit checkpoint failed", metadata: ["reason": "\(error)"])
        }
    }
}
