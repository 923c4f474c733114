import Foundation

/// A real server from Debian's packages (nginx, HAProxy) run in the foreground by a test: started,
/// waited for until it accepts connections, and killed by pid, workers included, when the test ends.
final class RelyingPartyServer: @unchecked Sendable {
    let name: String
    let process = Process()
    private let output = OutputCollector()
    private let exit: ProcessExit
    private let logFile: String?

    /// - Parameters:
    ///   - pidFile: where the server writes its master's pid; it must appear before the server counts as started.
    ///   - logFile: the server's own error log, shown with its output in `log`.
    init(name: String, executable: String, arguments: [String], port: Int, pidFile: String, logFile: String? = nil) throws {
        self.name = name
        self.logFile = logFile
        exit = ProcessExit(process)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        try process.runLongLived(output: output)
        let started = eventually(timeout: 15) {
            guard process.isRunning else { return true }
            let pid = (try? String(contentsOfFile: pidFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            return pid == String(process.processIdentifier) && (try? RawConnection(port: port)) != nil
        }
        guard started, process.isRunning else {
            stop()
            throw CLIFailure("\(name) did not start on port \(port): \(log)")
        }
    }

    var pid: Int32 { process.processIdentifier }

    /// The server's stdout/stderr and its error log.
    var log: String {
        let file = logFile.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? ""
        return output.text + (file.isEmpty ? "" : "\n\(logFile ?? "") :\n" + file)
    }

    /// SIGTERM to the master (nginx and HAProxy stop their workers then); SIGKILL to it and every
    /// worker it had if it is still there after 5 s.
    func stop() {
        guard process.isRunning else {
            output.waitUntilDrained()
            return
        }
        let workers = Self.children(of: pid)
        kill(pid, SIGTERM)
        if !exit.wait(timeout: 5) {
            for worker in workers { kill(worker, SIGKILL) }
            kill(pid, SIGKILL)
            exit.wait()
        }
        output.waitUntilDrained()
    }

    deinit { stop() }

    /// Processes whose parent is `pid`, from /proc/*/stat.
    static func children(of pid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let child = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.range(of: ")", options: .backwards) else { return nil }
            // After "pid (comm)": state, then the parent's pid.
            let fields = stat[close.upperBound...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == pid ? child : nil
        }
    }
}
