import Foundation

/// The relying-party recipes of README.md (nginx, HAProxy, curl), as tests run them: each is the
/// fenced block after a marker line `<!-- recipe: NAME -->`, so the README cannot drift from what
/// the real programs accept.
enum ReadmeRecipes {
    static func text() throws -> String {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("README.md")
        return try String(contentsOf: readme, encoding: .utf8)
    }

    /// The body of the first fenced block (any language) right after the marker line of `name`.
    static func block(_ name: String, in text: String) throws -> String {
        let marker = "\n<!-- recipe: \(name) -->\n"
        guard let start = text.range(of: marker), text[start.upperBound...].hasPrefix("```"),
              let bodyStart = text.range(of: "\n", range: start.upperBound..<text.endIndex),
              let close = text.range(of: "\n```", range: bodyStart.lowerBound..<text.endIndex) else {
            throw CLIFailure("README.md: no fenced block right after the line <!-- recipe: \(name) -->")
        }
        return String(text[bodyStart.upperBound..<close.lowerBound])
    }

    /// `block` with each pattern replaced; a pattern that no longer occurs is an error, so a README
    /// edit cannot silently leave a production path or port in what the test runs.
    static func substituting(_ replacements: [(String, String)], in block: String, name: String) throws -> String {
        var result = block
        for (pattern, replacement) in replacements {
            guard result.contains(pattern) else { throw CLIFailure("README.md recipe \(name) no longer contains \(pattern)") }
            result = result.replacingOccurrences(of: pattern, with: replacement)
        }
        return result
    }
}
