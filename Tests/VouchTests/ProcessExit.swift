import Foundation

/// Tells the moment a child process exits. On Linux, Foundation's `waitUntilExit()` notices an
/// exit only on its next 50 ms run-loop turn, and polling `isRunning` costs its own interval; the
/// termination handler runs as soon as the child is reaped.
final class ProcessExit: @unchecked Sendable {
    private let condition = NSCondition()
    private var exited = false
    private weak var process: Process?

    /// Installs the process's termination handler: create it before `process.run()`.
    init(_ process: Process) {
        self.process = process
        process.terminationHandler = { [self] _ in
            condition.withLock {
                exited = true
                condition.broadcast()
            }
        }
    }

    /// Waits until the process exited or `timeout` passed; whether it exited.
    @discardableResult
    func wait(timeout: TimeInterval = .infinity) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        let hasExited = condition.withLock {
            while !exited {
                if timeout == .infinity {
                    condition.wait()
                } else if !condition.wait(until: deadline) {
                    break
                }
            }
            return exited
        }
        // Foundation's Process keeps a run-loop source that retains the process (and so its pipes'
        // descriptors) until `waitUntilExit()` clears it; after the exit that call returns at once.
        if hasExited { process?.waitUntilExit() }
        return hasExited
    }
}
