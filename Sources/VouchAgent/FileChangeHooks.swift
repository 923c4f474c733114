import Foundation
import Logging
import Synchronization

/// Tells other local processes (nginx, envoy...) that new files are on disk: runs `--exec` and
/// then sends `--signal` to the process in `--pid-file`, after a rotation, a CRL change or a trust
/// bundle change (`FileChange`), for the kinds `--hook-on` selects.
///
/// Changes are gathered: the hooks run `debounce` after the first change, once, for everything
/// that came meanwhile (a revocation rewrites several CRL files; a rollover the bundle and then
/// the certificate), with `VOUCH_CHANGED` naming them. Changes that come while hooks run are
/// merged into the one next run, never lost and never queued twice. Hooks run on their own thread,
/// never in the rotation or CRL loop: `notify` returns at once. A hook gets `timeout`; then its
/// whole process group (it runs in its own) is killed and that is logged. `stop()` (agent
/// shutdown) kills a running hook's group.
final class FileChangeHooks: Sendable {
    let command: String?
    let signal: Int32?
    let pidFile: String?
    /// With `--signal-process-name`: the pid file's process must have this name.
    let processName: String?
    let timeout: Duration
    /// Changes within this time of the first one run the hooks once, together (zero: at once).
    let debounce: Duration
    /// The kinds of change that run hooks; others are ignored.
    let runOn: FileChange
    /// The output directory, for `VOUCH_DIR`.
    let directory: String
    /// The serial of the certificate on disk when a run starts, for `VOUCH_SERIAL`.
    let currentSerial: @Sendable () -> String
    let logger: Logger

    private struct State {
        /// Changes not yet handed to a run, and when the first of them came.
        var pending: FileChange = []
        var firstPendingAt: ContinuousClock.Instant?
        /// A runner thread exists: waiting out the debounce, or running hooks.
        var busy = false
        /// Hooks run now; changes coming now go to the next run.
        var running = false
        /// The process group of the exec hook running now.
        var runningGroup: pid_t?
        var timedOut = false
        var stopped = false
    }

    private let state = Mutex(State())

    init(command: String?, signal: Int32?, pidFile: String?, processName: String? = nil, timeout: Duration = .seconds(30),
         debounce: Duration = .zero, runOn: FileChange = .all, directory: String = "",
         currentSerial: @escaping @Sendable () -> String = { "" }, logger: Logger) {
        self.command = command
        self.signal = signal
        self.pidFile = pidFile
        self.processName = processName
        self.timeout = timeout
        self.debounce = debounce
        self.runOn = runOn
        self.directory = directory
        self.currentSerial = currentSerial
        self.logger = logger
    }

    /// Files of `change`'s kinds are on disk: gathers it for the next run of the hooks, starting
    /// that run's debounce if none is pending.
    func notify(_ change: FileChange) {
        let change = change.intersection(runOn)
        guard !change.isEmpty, command != nil || (signal != nil && pidFile != nil) else { return }
        enum Decision { case start, gathered, merged }
        let decision: Decision = state.withLock { state in
            if state.stopped { return .gathered }
            if state.pending.isEmpty { state.firstPendingAt = .now }
            state.pending.formUnion(change)
            if state.busy { return state.running ? .merged : .gathered }
            state.busy = true
            return .start
        }
        switch decision {
        case .gathered:
            return
        case .merged:
            logger.notice("hook still running; this change runs with the next hooks when it ends", metadata: ["changed": "\(change)"])
        case .start:
            Thread.detachNewThread { [self] in runWhilePending() }
        }
    }

    /// The runner thread: waits out the debounce, runs the hooks for the changes gathered, and
    /// again while changes came meanwhile.
    private func runWhilePending() {
        while true {
            // The debounce counts from the first change gathered, also one that came during a run.
            if let first = state.withLock({ $0.firstPendingAt }) {
                let wait = ContinuousClock.now.duration(to: first.advanced(by: debounce))
                if wait > .zero { Thread.sleep(forTimeInterval: wait.timeInterval) }
            }
            let changes: FileChange? = state.withLock { state in
                guard !state.stopped, !state.pending.isEmpty else {
                    state.busy = false
                    return nil
                }
                defer {
                    state.pending = []
                    state.firstPendingAt = nil
                    state.running = true
                }
                return state.pending
            }
            guard let changes else { return }
            let serial = currentSerial()
            execute(changes, serial: serial)
            if !state.withLock({ $0.stopped }) {
                logger.info("hooks ran for \(changes)", metadata: ["changed": "\(changes)", "serial": "\(serial)"])
            }
            let more: Bool = state.withLock { state in
                state.running = false
                if state.stopped || state.pending.isEmpty { state.busy = false }
                return state.busy
            }
            guard more else { return }
        }
    }

    /// Agent shutdown: no further hooks, and a running one is killed with its process group.
    func stop() {
        let group: pid_t? = state.withLock { state in
            state.stopped = true
            state.pending = []
            guard let group = state.runningGroup else { return nil }
            kill(-group, SIGKILL)
            return group
        }
        if let group, let command {
            logger.warning("shutting down: killed the running exec hook and its process group",
                           metadata: ["command": "\(command)", "pgid": "\(group)"])
        }
    }

    private func execute(_ changes: FileChange, serial: String) {
        if let command { runCommand(command, changes: changes, serial: serial) }
        // Not while shutting down: the exec hook it follows was just killed.
        if let signal, let pidFile, !state.withLock({ $0.stopped }) { sendSignal(signal, pidFile: pidFile) }
    }

    private func runCommand(_ command: String, changes: FileChange, serial: String) {
        var environment = ProcessInfo.processInfo.environment
        environment["VOUCH_SERIAL"] = serial
        environment["VOUCH_DIR"] = directory
        environment["VOUCH_CHANGED"] = changes.description
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
                "command": "\(command)", "timeout": "\(timeout)", "serial": "\(serial)", "changed": "\(changes)", "pgid": "\(pid)"])
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
