import ServiceLifecycle

// ServiceLifecycle's `gracefulShutdown()` and `cancelWhenGracefulShutdown` can miss a shutdown
// triggered just before they start waiting (their waiter is resumed before it is stored). These
// wait on a stream instead: finishing a stream before anyone iterates it still ends the iteration.

/// Returns once graceful shutdown is triggered (also before the call) or the task is cancelled.
public func untilShutdown() async {
    let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
    await withTaskCancellationHandler {
        await withGracefulShutdownHandler {
            for await _ in stream {}
        } onGracefulShutdown: {
            continuation.finish()
        }
    } onCancel: {
        continuation.finish()
    }
}

/// Runs `operation` until it ends or graceful shutdown is triggered, whichever comes first;
/// on shutdown the operation is cancelled and this throws `CancellationError`.
public func cancelOnShutdown(_ operation: @escaping @Sendable () async throws -> Void) async throws {
    try await withThrowingTaskGroup(of: Bool.self) { group in
        group.addTask {
            try await operation()
            return true
        }
        group.addTask {
            await untilShutdown()
            return false
        }
        let finished = try await group.next() ?? false
        group.cancelAll()
        if !finished { throw CancellationError() }
    }
}
