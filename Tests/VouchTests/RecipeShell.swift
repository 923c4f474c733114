import Foundation
import XCTest

/// Runs the `sh` lines of a README recipe one by one, in `directory`, with the built `vouch` first on
/// PATH: `vouch agent` and a line ending in ` &` are started and left running, every other line must
/// exit 0. One line is one command; a trailing `\` continues it, `#` lines are comments.
struct RecipeShell {
    let directory: String

    static func commands(in block: String) -> [String] {
        var commands: [String] = [], pending = ""
        for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if pending.isEmpty, trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            pending += line + "\n"
            if !line.hasSuffix("\\") { commands.append(pending); pending = "" }
        }
        if !pending.isEmpty { commands.append(pending) }
        return commands.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// The commands of README.md's block `name`, each of `replacements` made (and required to occur).
    static func commands(ofRecipe name: String, in text: String, replacing replacements: [(String, String)]) throws -> [String] {
        commands(in: try ReadmeRecipes.substituting(replacements, in: try ReadmeRecipes.block(name, in: text), name: name))
    }

    static func isBackground(_ command: String) -> Bool { command.hasSuffix(" &") || command.hasPrefix("vouch agent ") }

    private var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        let vouchDirectory = (VouchBinary.path as NSString).deletingLastPathComponent
        environment["PATH"] = vouchDirectory + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        return environment
    }

    /// Runs foreground lines, starts background ones (kept in `started`, stopped with SIGTERM).
    func perform(_ commands: [String], asUser user: String? = nil, into started: RecipeProcesses) throws {
        for command in commands {
            if Self.isBackground(command) { started.add(try start(command, asUser: user)) } else { try run(command) }
        }
    }

    /// Runs a foreground line to completion; its output, or a failure naming the line.
    @discardableResult
    func run(_ command: String) throws -> CommandResult {
        let result = try complete(command)
        guard result.status == 0 else { throw CLIFailure("recipe line failed (\(result.status)): \(command)\n\(result.stdout)\(result.stderr)") }
        return result
    }

    /// Runs a foreground line to completion, whatever its status.
    func complete(_ command: String) throws -> CommandResult {
        precondition(!Self.isBackground(command), "\(command) is a background line")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let output = OutputCollector(), errors = OutputCollector(), exit = ProcessExit(process)
        output.attach(out.fileHandleForReading)
        errors.attach(err.fileHandleForReading)
        try process.run()
        guard exit.wait(timeout: 60) else {
            kill(process.processIdentifier, SIGKILL)
            throw CLIFailure("recipe line did not finish within 60 s: \(command)")
        }
        output.waitUntilDrained()
        errors.waitUntilDrained()
        return CommandResult(status: process.terminationStatus, stdout: output.text, stderr: errors.text)
    }

    /// Starts a background line (without its ` &`) as the process itself (`exec`), optionally as
    /// another user; setpriv execs too, so the pid is the program's and signals reach it.
    func start(_ command: String, asUser user: String? = nil) throws -> RecipeProcess {
        precondition(Self.isBackground(command), "\(command) is not a background line")
        let line = "exec " + (command.hasSuffix(" &") ? String(command.dropLast(2)) : command)
        let launcher = user.map { ["/usr/bin/setpriv", "--reuid=\($0)", "--regid=\($0)", "--init-groups", "--"] } ?? []
        return try RecipeProcess(launcher + ["/bin/sh", "-c", line], directory: directory, environment: environment)
    }
}

/// A long-running program a recipe started; stopped when the test ends.
final class RecipeProcess: @unchecked Sendable {
    let process = Process()
    private let output = OutputCollector()
    private let exit: ProcessExit

    init(_ command: [String], directory: String, environment: [String: String]) throws {
        exit = ProcessExit(process)
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        try process.runLongLived(output: output)
    }

    var log: String { output.text }
    var isRunning: Bool { process.isRunning }

    /// Waits until the output so far satisfies `condition`.
    func waitForOutput(timeout: TimeInterval, _ condition: (String) -> Bool) -> Bool {
        output.wait(timeout: timeout, until: condition)
    }

    /// SIGTERM with a graceful wait (a vouch agent), or SIGKILL (a JVM started from a test thread
    /// inherits a blocked SIGTERM).
    func stop(graceful: Bool = true) {
        if graceful {
            _ = terminate(process, exit: exit)
        } else if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            exit.wait(timeout: 15)
        }
        output.waitUntilDrained()
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

/// What a test's recipe started, stopped in its teardown (newest first).
final class RecipeProcesses: @unchecked Sendable {
    private let lock = NSLock()
    private var started: [(process: RecipeProcess, graceful: Bool)] = []

    func add(_ process: RecipeProcess, graceful: Bool = true) {
        lock.withLock { started.append((process, graceful)) }
    }

    var logs: String { lock.withLock { started.map(\.process.log) }.joined(separator: "\n---\n") }

    func stopAll() {
        for (process, graceful) in lock.withLock({ started.reversed() }) { process.stop(graceful: graceful) }
    }
}

/// Waits until every file exists in `directory`.
func waitForFiles(_ names: [String], in directory: String, timeout: TimeInterval = 15) -> Bool {
    eventually(timeout: timeout) { names.allSatisfy { FileManager.default.fileExists(atPath: directory + "/" + $0) } }
}
