import Foundation
import XCTest

/// Runs the real `vouch` binary built by `swift build`.
enum VouchBinary {
    static var path: String {
        if let explicit = ProcessInfo.processInfo.environment["VOUCH_BIN"] { return explicit }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for candidate in [".build/debug/vouch", ".build/release/vouch"] {
            let path = root.appendingPathComponent(candidate).path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return root.appendingPathComponent(".build/debug/vouch").path
    }
}

struct CommandResult {
    let status: Int32
    let stdout: String
    let stderr: String

    var lastLine: String { stdout.split(separator: "\n").last.map(String.init) ?? "" }
}

/// Runs a command to completion and captures its output. `environment` is added over the test's own
/// (e.g. SOFTHSM2_CONF naming a test's own token directory).
func execute(_ executable: String, _ arguments: [String], stdin: Data? = nil,
             environment: [String: String] = [:]) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.environment = childEnvironment(adding: environment)
    let out = Pipe(), err = Pipe(), input = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = input
    let exit = ProcessExit(process)
    try process.run()
    if let stdin { input.fileHandleForWriting.write(stdin) }
    try input.fileHandleForWriting.close()
    // Read both pipes before waiting so a chatty child cannot block on a full pipe.
    let group = DispatchGroup()
    nonisolated(unsafe) var outData = Data(), errData = Data()
    group.enter()
    DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    errData = err.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    // Bounded: a child that never exits fails the test instead of hanging the suite.
    guard exit.wait(timeout: 120) else {
        kill(process.processIdentifier, SIGKILL)
        throw CLIFailure("\(executable) \(arguments.joined(separator: " ")) did not exit within 120 s")
    }
    return CommandResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

func vouch(_ arguments: String...) throws -> CommandResult {
    try execute(VouchBinary.path, arguments)
}

/// `vouch` with variables added to its environment.
func vouch(_ arguments: [String], environment: [String: String]) throws -> CommandResult {
    try execute(VouchBinary.path, arguments, environment: environment)
}

/// The test's environment with `extra` added over it; nil (inherit unchanged) when there is nothing to add.
func childEnvironment(adding extra: [String: String]) -> [String: String]? {
    extra.isEmpty ? nil : ProcessInfo.processInfo.environment.merging(extra) { $1 }
}

func openssl(_ arguments: [String], stdin: Data? = nil) throws -> CommandResult {
    try execute("/usr/bin/openssl", arguments, stdin: stdin)
}

/// A `vouch server` child process on 127.0.0.1 with a free port.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let directory: String
    private(set) var port = 0
    private let output = OutputCollector()
    private let exit: ProcessExit

    /// - Parameter openFileLimit: the server's RLIMIT_NOFILE, set with prlimit(1) for it alone (lowering
    ///   the test process's own limit would starve Foundation's process launching of descriptors).
    /// - Parameter environment: added over the test's environment (e.g. SOFTHSM2_CONF).
    init(directory: String, port: Int = 0, extraArguments: [String] = [], openFileLimit: Int? = nil,
         environment: [String: String] = [:]) throws {
        self.directory = directory
        exit = ProcessExit(process)
        self.port = try launch(process, output: output,
                               arguments: ["server", "--dir", directory, "--listen", "127.0.0.1:\(port)"] + extraArguments,
                               announcement: "vouch server listening on ",
                               launcher: openFileLimit.map { ["/usr/bin/prlimit", "--nofile=\($0):\($0)", "--"] } ?? [],
                               environment: environment)
    }

    /// SIGKILL: no graceful shutdown at all.
    func kill() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        exit.wait()
        output.waitUntilDrained()
    }

    var address: String { "127.0.0.1:\(port)" }
    var log: String { output.text }
    /// The `--http` listener's HOST:PORT, once the server has announced it.
    var httpAddress: String? { announcedAddress(in: log, after: "vouch server http on ") }

    /// SIGTERM, then wait for a graceful exit; returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        let status = terminate(process, exit: exit)
        output.waitUntilDrained()
        return status
    }

    deinit { if process.isRunning { process.terminate() } }
}

/// A `vouch agent` child process.
final class AgentProcess: @unchecked Sendable {
    let process = Process()
    private(set) var port = 0
    private let output = OutputCollector()
    private let exit: ProcessExit

    init(arguments: [String], environment: [String: String] = [:]) throws {
        exit = ProcessExit(process)
        port = try launch(process, output: output, arguments: ["agent"] + arguments + ["--listen", "127.0.0.1:0"],
                          announcement: "vouch agent listening on ", environment: environment)
    }

    var address: String { "127.0.0.1:\(port)" }
    var log: String { output.text }
    var pid: Int32 { process.processIdentifier }

    @discardableResult
    func stop() -> Int32 {
        let status = terminate(process, exit: exit)
        output.waitUntilDrained()
        return status
    }

    deinit { if process.isRunning { process.terminate() } }
}

/// SIGTERM and wait up to 15 s for a graceful exit; a process that hangs is
/// killed and reported as status -1, so a broken shutdown fails tests instead of hanging them.
/// `exit`, made before the process started, tells its exit at once instead of on the next poll.
func terminate(_ process: Process, exit: ProcessExit? = nil) -> Int32 {
    guard process.isRunning else { return process.terminationStatus }
    process.terminate()
    if let exit {
        exit.wait(timeout: 15)
    } else {
        let deadline = Date().addingTimeInterval(15)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
    }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return -1
    }
    return process.terminationStatus
}

/// Starts `vouch` with `arguments` and waits for the line announcing its port.
private func launch(_ process: Process, output: OutputCollector, arguments: [String], announcement: String,
                    launcher: [String] = [], environment: [String: String] = [:]) throws -> Int {
    // A launcher (e.g. prlimit) runs first and execs `vouch`: the pid stays the one of the server.
    let command = launcher + [VouchBinary.path] + arguments
    process.executableURL = URL(fileURLWithPath: command[0])
    process.arguments = Array(command.dropFirst())
    process.environment = childEnvironment(adding: environment)
    try process.runLongLived(output: output)
    func announcedPort(_ text: String) -> Int? {
        announcedAddress(in: text, after: announcement).flatMap { Int($0.split(separator: ":").last ?? "") }
    }
    // Woken by each chunk of output, and given up when the child closes its output (it died).
    if output.wait(timeout: 30, until: { announcedPort($0) != nil }), let port = announcedPort(output.text) {
        return port
    }
    process.terminate()
    throw CLIFailure("\(arguments.first ?? "") did not start: \(output.text)")
}

struct CLIFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Collects a child's output as it arrives.
final class OutputCollector: @unchecked Sendable {
    /// Guards the fields; broadcast on every chunk and end of file, so waiting costs no polling interval.
    private let condition = NSCondition()
    private var data = Data()
    private var attached = 0
    private var closed = 0

    /// Reads on a thread of its own with blocking reads until end of file. Not `readabilityHandler`:
    /// tearing down its libdispatch read source races the descriptor's close, which now and then
    /// crashed the whole test process in `_dispatch_event_loop_drain` (a known Linux libdispatch bug).
    func attach(_ handle: FileHandle) {
        condition.withLock { attached += 1 }
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                received(chunk)
                if chunk.isEmpty { return }
            }
        }
    }

    private func received(_ chunk: Data) {
        condition.withLock {
            if chunk.isEmpty { closed += 1 } else { data.append(chunk) }
            condition.broadcast()
        }
    }

    var text: String { condition.withLock { String(decoding: data, as: UTF8.self) } }

    /// Waits until `satisfied` holds for the text so far; false after `timeout`, or once every
    /// pipe reached end of file without it.
    func wait(timeout: TimeInterval, until satisfied: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        return condition.withLock {
            while !satisfied(String(decoding: data, as: UTF8.self)) {
                guard closed < attached, condition.wait(until: deadline) else {
                    return satisfied(String(decoding: data, as: UTF8.self))
                }
            }
            return true
        }
    }

    /// After the child exited: waits until every pipe reached end of file, so `text` is complete.
    func waitUntilDrained(timeout: TimeInterval = 3) {
        let deadline = Date().addingTimeInterval(timeout)
        condition.withLock {
            while closed < attached, condition.wait(until: deadline) {}
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes (logs arrive asynchronously).
func eventually(timeout: TimeInterval = 3, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
        if Date() > deadline { return false }
        Thread.sleep(forTimeInterval: 0.005)
    }
    return true
}

/// The HOST:PORT a process announced after `prefix` on stdout. Stdout shares the pipe with the log
/// on stderr, and a long log line written in pieces can put the announcement mid-line.
func announcedAddress(in output: String, after prefix: String) -> String? {
    for line in output.split(separator: "\n") {
        guard let found = line.range(of: prefix) else { continue }
        let address = line[found.upperBound...].prefix { $0.isNumber || $0 == "." || $0 == ":" || $0 == "[" || $0 == "]" }
        if !address.isEmpty { return String(address) }
    }
    return nil
}

func temporaryDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-test-\(UUID().uuidString.prefix(8))").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Runs a shell command line.
func sh(_ command: String) throws -> CommandResult { try execute("/bin/sh", ["-c", command]) }
