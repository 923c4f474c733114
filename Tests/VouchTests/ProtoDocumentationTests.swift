import Foundation
import XCTest

/// Clients in other languages work from the .proto files alone, so every service, RPC, message,
/// enum, field and enum value in them carries a comment saying what it means.
final class ProtoDocumentationTests: XCTestCase {
    static let protoDirectory = PythonClientTests.repository + "/Sources/VouchAPI/vouch/v1"

    func testEveryServiceRPCMessageAndFieldIsCommented() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.protoDirectory).filter { $0.hasSuffix(".proto") }
        XCTAssertEqual(Set(files), ["ca.proto", "agent.proto"])
        var declarations = 0
        for file in files {
            let lines = try String(contentsOfFile: Self.protoDirectory + "/" + file, encoding: .utf8)
                .split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            for (index, line) in lines.enumerated() where Self.isDeclaration(line) {
                declarations += 1
                let previous = index > 0 ? lines[index - 1] : ""
                XCTAssertTrue(previous.hasPrefix("//"), "\(file):\(index + 1) has no comment: \(line)")
            }
        }
        // 3 services, 13 RPCs, 27 messages, 1 enum with 4 values and 90 fields today: the scan saw them.
        XCTAssertGreaterThan(declarations, 100)
    }

    /// A line that declares something a client programs against.
    static func isDeclaration(_ line: String) -> Bool {
        let patterns = [
            #"^(service|message|enum|rpc)\s+\w+"#,                        // service, message, enum, RPC
            #"^(repeated\s+|optional\s+)?[\w.]+\s+\w+\s*=\s*\d+\s*;"#,    // field
            #"^[A-Z][A-Z0-9_]*\s*=\s*\d+\s*;"#,                           // enum value
        ]
        return patterns.contains { line.range(of: $0, options: .regularExpression) != nil }
    }
}
