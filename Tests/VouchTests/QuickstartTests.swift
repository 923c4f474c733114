import Foundation
import XCTest

/// README's run command, as a newcomer runs it.
final class QuickstartTests: XCTestCase {
    /// 5 s is the shortest lifetime the CA issues: two rotations take about 6.5 s.
    func testQuickstartShowsRotationsAndStopsCleanlyOnCtrlC() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = try QuickstartRun(dir: dir, certificateTTL: "5s")
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

    /// Right after enrolling, the agent fetches its first CRL and binds its listener: Ctrl-C then
    /// cancels the fetch, which is a shutdown, not a failed refresh (and once hung quickstart when
    /// the fetch was just queueing for its connection: ClientCancellationTests catches that every
    /// time), and stops a listener that may still be binding (which once made the transport fail
    /// or crash). Five times, since the moment varies.
    func testCtrlCRightAfterEnrollmentStopsCleanlyWithoutWarnings() throws {
        for attempt in 0..<5 {
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let run = try QuickstartRun(dir: dir, certificateTTL: "12s")
            run.wait(until: 30) { $0.contains("Agent enrolled") }
            let status = run.interrupt()
            if status == -1 {
                XCTFail("attempt \(attempt): still running 10 s after Ctrl-C: \(run.log.text.suffix(2000))")
                continue
            }
            XCTAssertEqual(status, 0, "attempt \(attempt): \(run.log.text.suffix(2000))")
            XCTAssertEqual(run.cancellationWarnings, [], run.log.text)
        }
    }
}

/// `vouch quickstart` with its stdout (what the user reads) and its log (stderr) collected.
private struct QuickstartRun {
    let process = Process()
    let output = OutputCollector()
    let log = OutputCollector()
    let exit: ProcessExit

    init(dir: String, certificateTTL: String) throws {
        exit = ProcessExit(process)
        process.executableURL = URL(fileURLWithPath: VouchBinary.path)
        process.arguments = ["quickstart", "--dir", dir, "--cert-ttl", certificateTTL]
        try process.runLongLived(output: output, errors: log)
    }

    func wait(until seconds: TimeInterval, for condition: (String) -> Bool) {
        _ = output.wait(timeout: seconds, until: condition)
    }

    /// Ctrl-C alone, as a user presses it; the exit status, or -1 if it took over 10 s (it takes
    /// about 50 ms).
    func interrupt() -> Int32 {
        kill(process.processIdentifier, SIGINT)
        guard exit.wait(timeout: 10) else {
            _ = terminate(process, exit: exit)
            return -1
        }
        output.waitUntilDrained()
        log.waitUntilDrained()
        return process.terminationStatus
    }

    /// Stopping is not a failure: log lines warning that a sleep or an RPC was cancelled.
    var cancellationWarnings: [Substring] {
        log.text.split(separator: "\n").filter { $0.contains("warning") && $0.contains("Cancellation") }
    }
}
