import Foundation
import Synchronization

/// Servers and agents the tests started. A fixture that is never released (XCTest keeps every
/// test case object until the end) would leave its server running after the suite; at exit the
/// test process kills whatever is still running.
enum LongRunningChildren {
    private static let pids = Mutex<Set<pid_t>>([])
    private static let installExitHandler: Void = { atexit { LongRunningChildren.killAll() } }()

    static func register(_ process: Process) {
        _ = installExitHandler
        pids.withLock { _ = $0.insert(process.processIdentifier) }
    }

    private static func killAll() {
        for pid in pids.withLock({ $0 }) {
            // Only a child of ours that has not been reaped: its pid cannot belong to anyone else.
            var info = siginfo_t()
            if waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0, info._sifields._sigchld.si_pid == 0 {
                kill(pid, SIGKILL)
            }
        }
    }
}

extension Process {
    /// Starts a long-running child with its standard output read by `output` and its standard error
    /// by `errors` (the same collector unless given), registered so it is killed at exit if a test
    /// leaves it running.
    func runLongLived(output: OutputCollector, errors: OutputCollector? = nil) throws {
        let out = Pipe(), err = Pipe()
        standardOutput = out
        standardError = err
        output.attach(out.fileHandleForReading)
        (errors ?? output).attach(err.fileHandleForReading)
        try run()
        LongRunningChildren.register(self)
    }
}
