import Foundation
import XCTest

/// README's run command, as a newcomer runs it.
final class QuickstartTests: XCTestCase {
    func testQuickstartShowsRotationsAndStopsCleanlyOnCtrlC() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: VouchBinary.path)
        process.arguments = ["quickstart", "--dir", dir, "--cert-ttl", "12s"]
        let output = OutputCollector()
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        output.attach(pipe.fileHandleForReading)
        try process.run()

        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, output.text.components(separatedBy: "Agent rotated").count < 3 {
            Thread.sleep(forTimeInterval: 0.2)
        }
        kill(process.processIdentifier, SIGINT)
        let status = terminate(process)
        let text = output.text
        XCTAssertTrue(text.contains("Agent enrolled spiffe://example.org/demo/web"), text)
        XCTAssertGreaterThanOrEqual(text.components(separatedBy: "Agent rotated").count - 1, 2, text)
        XCTAssertEqual(status, 0, "Ctrl-C stops quickstart cleanly: \(text)")
        XCTAssertTrue(text.contains("Stopped."), text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/agent/files/svid.pem"))
    }
}
