import Foundation

/// Reads a CA passphrase from a file, or VOUCH_CA_PASSPHRASE.
func readPassphrase(file: String?) throws -> String? {
    if let file {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw CLIError("cannot read passphrase file \(file)")
        }
        let passphrase = text.trimmingCharacters(in: .newlines)
        guard !passphrase.isEmpty else { throw CLIError("passphrase file \(file) is empty") }
        return passphrase
    }
    if let env = ProcessInfo.processInfo.environment["VOUCH_CA_PASSPHRASE"], !env.isEmpty { return env }
    return nil
}
