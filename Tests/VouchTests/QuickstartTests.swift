import Foundation
import XCTest

/// README's run command, as a newcomer runs it.
final class QuickstartTests: XCTestCase {
    func testQuickstartShowsRotationsAndStopsCleanlyOnCtrlC() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try QuickstartRun(dir: dir)
        run.wait(until: 60) { $0.components(separatedBy: "Agent rotated").count >= 3 }
        let status = run.interrupt()
        let text = run.output.text
        XCTAssertTrue(text.contains("Agent enrolled spiffe://example.org/demo/web"), text)
        XCTAssertGreaterThanOrEqual(text.components(separatedBy: "Agent rotated").count - 1, 2, text)
        XCTAssertEqual(status, 0, "Ctrl-C stops quickstart cleanly: \(text)")
        XCTAssertTrue(text.contains("Stopped."), text)
        XCTAssertEqual(run.cancellationWarnings, [], run.log.text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/agent/files/svid.pem"))
    }

    /// Right after enrolling, the agent fetches its first CRL: Ctrl-C then cancels that fetch,
    /// which is a shutdown, not a failed refresh.
    func testCtrlCWhileTheFirstCRLIsFetchedDoesNotWarn() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try QuickstartRun(dir: dir)
        run.wait(until: 30) { $0.contains("Agent enrolled") }
        _ = run.interrupt()
        XCTAssertEqual(run.cancellationWarnings, [], run.log.text)
    }
}

/// `vouch quickstart` with its stdout (what the user reads) and its log (stderr) collected.
private struct QuickstartRun {
    let process = Process()
    let output = OutputCollector()
    let log = OutputCollector()

    init(dir: String) throws {
        process.executableURL = URL(fileURLWithPath: VouchBinary.path)
        process.arguments = ["quickstart", "--dir", dir, "--cert-ttl", "12s"]
        let pipe = Pipe(), logPipe = Pipe()
        process.standardOutput = pipe
        process.standardError = logPipe
        output.attach(pipe.fileHandleForReading)
        log.attach(logPipe.fileHandleForReading)
        try process.run()
    }

    func wait(until seconds: TimeInterval, for condition: (String) -> Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, !condition(output.text) { Thread.sleep(forTimeInterval: 0.01) }
    }

    /// Ctrl-C; returns the exit status once the process and its pipes are done.
    func interrupt() -> Int32 {
        kill(process.processIdentifier, SIGINT)
        let status = terminate(process)
        output.waitUntilDrained()
        log.waitUntilDrained()
        return status
    }

    /// Stopping is not a failure: log lines warning that a sleep or an RPC was cancelled.
    var cancellationWarnings: [Substring] {
        log.text.split(separator: "\n").filter { $0.contains("warning") && $0.contains("Cancellation") }
    }
}
