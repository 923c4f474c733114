import Foundation

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func iso8601(_ seconds: Int64) -> String {
    seconds == 0 ? "" : Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(.iso8601)
}

/// Prints rows as aligned columns. Cells come from the CA and its database: each is shown as
/// `terminalText` shows it, so no value can move the cursor, retitle or clear the terminal, or
/// reorder or break the table.
func printTable(_ header: [String], _ rows: [[String]]) {
    let all = ([header] + rows).map { $0.map(terminalText) }
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    for row in all {
        print(row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }.joined(separator: "  "))
    }
}

/// `text` with C0 and C1 controls, bidi overrides, zero-width characters and line separators
/// written as `\u{…}` (as the CA quotes caller text in its refusals).
func terminalText(_ text: String) -> String {
    func isHidden(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }
    guard text.unicodeScalars.contains(where: isHidden) else { return text }
    return text.unicodeScalars.map { isHidden($0) ? "\\u{\(String($0.value, radix: 16, uppercase: true))}" : String($0) }.joined()
}
