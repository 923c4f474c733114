import Foundation

/// The fenced `sh` blocks of docs/operations.md, as tests run them: the operator's procedures
/// themselves, so the guide cannot drift from the CLI.
enum OperationsGuide {
    static let rotateIntermediate = "## Rotating the intermediate", rotateRoot = "## Rotating the root"

    static func text() throws -> String {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/operations.md")
        return try String(contentsOf: docs, encoding: .utf8)
    }

    /// The first ```` ```sh ```` block after the line `heading`.
    static func firstShellBlock(after heading: String, in text: String) -> String? {
        guard let start = text.range(of: "\n" + heading + "\n"),
              let open = text.range(of: "```sh\n", range: start.upperBound..<text.endIndex),
              let close = text.range(of: "\n```", range: open.upperBound..<text.endIndex) else { return nil }
        return String(text[open.upperBound..<close.lowerBound])
    }

    /// The block under `heading` as a script for `/bin/sh`: stops at the first failing command,
    /// with `D` the CA directory, `ROOT_KEY` its initial root key and `vouch` the built binary.
    static func script(_ heading: String, caDirectory: String, text: String) throws -> String {
        guard let block = firstShellBlock(after: heading, in: text) else { throw CLIFailure("docs/operations.md: no sh block after \(heading)") }
        let vouchDirectory = (VouchBinary.path as NSString).deletingLastPathComponent
        return "set -e\nexport D='\(caDirectory)' ROOT_KEY='\(caDirectory)/root_key.pem' PATH=\"\(vouchDirectory):$PATH\"\n\(block)"
    }
}
