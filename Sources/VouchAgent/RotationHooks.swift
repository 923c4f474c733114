import Foundation
import Logging
import Synchronization

/// Tells other local processes (nginx, envoy...) that new files are on disk: runs `--exec` and
/// then sends `--signal` to the process in `--pid-file`.
///
/// Hooks run on their own thread, never in the rotation loop: `run` returns at once. A hook gets
/// `timeout`; then its whole process group (it runs in its own) is killed and that is logged.
/// A rotation that comes while a hook still runs is not started twice: the latest one is queued
/// and runs when the current hook ends. `stop()` (agent shutdown) kills a running hook's group.
final class RotationHooks: Sendable {
    let command: String?
    let signal: Int32?
    let pidFile: String?
    /// With `--signal-process-name`: the pid file's process must have this name.
    let processName: String?
    let timeout: Duration
    let logger: Logger

    private struct Job {
        let serial: String
        let directory: String
    }

    private struct State {
        var busy = false
        var queued: Job?
        /// The process group of the exec hook running now.
        var runningGroup: pid_t?
        var timedOut = false
        var stopped = false
    }

    private let state = Mutex(State())

    init(command: String?, signal: Int32?, pidFile: String?, processName: String? = nil, timeout: Duration = .seconds(30),
         logger: Logger) {
        self.command = command
        self.signal = signal
        self.pidFile = pidFile
        self.processName = processName
        self.timeout = timeout
        self.logger = logger
    }

    /// Starts the hooks for a new certificate, or queues them behind a hook still running.
    func run(serial: String, directory: String) {
        guard command != nil || (signal != nil && pidFile != nil) else { return }
        let job = Job(serial: serial, directory: directory)
        enum Decision { case start, queue, stopped }
        let decision: Decision = state.withLock { state in
            if state.stopped { return .stopped }
            if state.busy {
                state.queued = job
                return .queue
            }
            state.busy = true
            return .start
        }
        switch decision {
        case .stopped:
            return
        case .queue:
            logger.warning("rotation hook still running; hooks for this certificate run when it ends",
                           metadata: ["serial": "\(serial)"])
            return
        case .start:
            break
        }
        Thread.detachNewThread { [self] in
            var next: Job? = job
            while let job = next {
                execute(job)
                next = state.withLock { state in
                    defer { state.queued = nil }
                    if state.stopped || state.queued == nil { state.busy = false }
                    return state.stopped ? nil : state.queued
                }
            }
        }
    }

    /// Agent shutdown: no further hooks, and a running one is killed with its process group.
    func stop() {
        let group: pid_t? = state.withLock { state in
            state.stopped = true
            state.queued = nil
            guard let group = state.runningGroup else { return nil }
            kill(-group, SIGKILL)
            return group
        }
        if let group, let command {
            logger.warning("shutting down: killed the running exec hook and its process group",
                           metadata: ["command": "\(command)", "pgid": "\(group)"])
        }
    }

    private func execute(_ job: Job) {
        if let command { runCommand(command, job) }
        // Not while shutting down: the exec hook it follows was just killed.
        if let signal, let pidFile, !state.withLock({ $0.stopped }) { sendSignal(signal, pidFile: pidFile) }
    }

    private func runCommand(_ command: String, _ job: Job) {
        var environment = ProcessInfo.processInfo.environment
        environment["VOUCH_SERIAL"] = job.serial
        environment["VOUCH_DIR"] = job.directory
        let pid: pid_t
        do {
            pid = try ProcessGroupSpawn.shell(command, environment: environment)
        } catch {
            logger.warning("exec hook could not start", metadata: ["command": "\(command)", "error": "\(error)"])
            return
        }
        let started = state.withLock { state -> Bool in
            state.timedOut = false
            state.runningGroup = pid
            return !state.stopped
        }
        if !started { kill(-pid, SIGKILL) }
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
            // Only while this very hook is unreaped: its pid (and group id) cannot have been reused.
            state.withLock { state in
                guard state.runningGroup == pid else { return }
                state.timedOut = true
                kill(-pid, SIGKILL)
            }
        }
        // Wait without reaping, forget the group, then reap: the timer never signals a reused pid.
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0, errno == EINTR {}
        let timedOut = state.withLock { state in
            state.runningGroup = nil
            return state.timedOut
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1, errno == EINTR {}
        if timedOut {
            logger.error("exec hook timed out; killed its process group", metadata: [
                "command": "\(command)", "timeout": "\(timeout)", "serial": "\(job.serial)", "pgid": "\(pid)"])
        } else if status != 0 {
            logger.warning("exec hook failed", metadata: ["command": "\(command)", "status": "\(ProcessGroupSpawn.describe(status))"])
        }
    }

    private func sendSignal(_ signal: Int32, pidFile: String) {
        do {
            let target = try PidFileTarget(path: pidFile, expectedName: processName)
            if kill(target.pid, signal) != 0 {
                logger.warning("signal hook failed", metadata: ["pid": "\(target.pid)", "errno": "\(errno)"])
            }
        } catch {
            logger.warning("signal hook refused", metadata: ["pid_file": "\(pidFile)", "reason": "\(error)"])
        }
    }
}
