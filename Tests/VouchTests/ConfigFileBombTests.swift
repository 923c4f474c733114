import Foundation
import XCTest

/// A config file cannot exhaust memory: YAML anchors and aliases are refused before any document
/// is built (wherever they are, known key or not), and so is a file over 1 MiB.
final class ConfigFileBombTests: XCTestCase {
    /// Nine levels of nine aliases: about 400 bytes that expand to 9^9 (387 million) strings.
    static let aliasBomb: String = {
        var lines = [#"a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]"#]
        var previous = "a"
        for name in ["b", "c", "d", "e", "f", "g", "h", "i"] {
            lines.append("\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 9).joined(separator: ", ") + "]")
            previous = name
        }
        return lines.joined(separator: "\n") + "\n"
    }()

    func testAliasBombsAndHugeFilesAreRefusedAtOnceInOneLine() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cases: [(name: String, text: String, command: String, message: String)] = [
            ("bomb-unknown-key.yaml", Self.aliasBomb + "server:\n  lol: *i\n", "server", "line 1: YAML anchor found"),
            ("bomb-in-agent.yaml", "agent:\n  exec: &x echo\n  signal: *x\n", "agent", "line 2: YAML anchor found"),
            ("alias-only.yaml", "server:\n  dir: *undefined\n", "server", "line 2: YAML alias found"),
            // A libyaml scan of deep nesting is quadratic: 100,000 brackets took 27 s before the depth cap.
            ("deep.yaml", "server: {profiles: " + String(repeating: "[", count: 400_000) + String(repeating: "]", count: 400_000) + "}\n",
             "server", "line 1: nesting deeper than 32 levels"),
            ("huge.yaml", "server:\n  dir: " + String(repeating: "a", count: 1024 * 1024) + "\n", "server", "is larger than 1024 KiB"),
        ]
        for test in cases {
            let path = directory + "/" + test.name
            try test.text.write(toFile: path, atomically: true, encoding: .utf8)
            let started = Date()
            let result = try execute(VouchBinary.path, [test.command, "--config", path])
            XCTAssertLessThan(Date().timeIntervalSince(started), 1, "\(test.name) refused at once")
            XCTAssertNotEqual(result.status, 0, test.name)
            XCTAssertTrue(result.stderr.contains(test.message), "\(test.name): \(result.stderr)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "one line: \(result.stderr)")
        }
        XCTAssertLessThan(Self.aliasBomb.utf8.count, 500)
    }
}
