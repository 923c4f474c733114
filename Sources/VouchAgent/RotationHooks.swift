import Foundation
import Logging

/// Tells other local processes (nginx, envoy...) that new files are on disk.
struct RotationHooks: Sendable {
    let command: String?
    let signal: Int32?
    let pidFile: String?
    let logger: Logger

    func run(serial: String, directory: String) {
        if let command {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", command]
            var environment = ProcessInfo.processInfo.environment
            environment["VOUCH_SERIAL"] = serial
            environment["VOUCH_DIR"] = directory
            process.environment = environment
            do {
                try process.run()
                process.waitUntilExit()
                if process.terminationStatus != 0 {
                    logger.warning("exec hook failed", metadata: ["command": "\(command)", "status": "\(process.terminationStatus)"])
                }
            } catch {
                logger.warning("exec hook could not start", metadata: ["command": "\(command)", "error": "\(error)"])
            }
        }
        if let signal, let pidFile {
            guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
                  let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 else {
                logger.warning("signal hook: no pid in file", metadata: ["pid_file": "\(pidFile)"])
                return
            }
            if kill(pid, signal) != 0 {
                logger.warning("signal hook failed", metadata: ["pid": "\(pid)", "errno": "\(errno)"])
            }
        }
    }
}
