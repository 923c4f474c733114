import Foundation

/// Reads a CA passphrase from a file, or VOUCH_CA_PASSPHRASE.
func readPassphrase(file: String?) throws -> String? {
    if let file {
        let passphrase = try OperatorFile.text(file, what: "passphrase file", limit: 4096).trimmingCharacters(in: .newlines)
        guard !passphrase.isEmpty else { throw CLIError("passphrase file \(file) is empty") }
        OperatorFile.warnIfShared(file, what: "passphrase file")
        return passphrase
    }
    if let env = ProcessInfo.processInfo.environment["VOUCH_CA_PASSPHRASE"], !env.isEmpty { return env }
    return nil
}
