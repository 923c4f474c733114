import ArgumentParser
import Foundation
import VouchTLS

/// `--file KIND=NAME`, `--pkcs12`, `--truststore` and `--pkcs12-password-file` of `vouch agent`:
/// which files the agent writes in --out, under which names.
struct AgentFileOptions: ParsableArguments {
    @Option(name: .customLong("file"), help: ArgumentHelp(
        "Write KIND as NAME in --out (repeatable); an empty NAME turns KIND off, e.g. --file crl=.",
        discussion: "Kinds: certificate (svid.pem), key (svid_key.pem), chain (chain.pem), fullchain (fullchain.pem), bundle "
            + "(bundle.pem), crl (crl.pem), combined (off; fullchain + key, 0600), pkcs12 (off), truststore (off).",
        valueName: "KIND=NAME"))
    var files: [String] = []

    @Option(help: ArgumentHelp("Also write a PKCS#12 keystore (key, certificate and chain, alias vouch) as NAME in --out; needs --pkcs12-password-file.",
                               valueName: "NAME"))
    var pkcs12: String?

    @Option(help: ArgumentHelp("Also write a PKCS#12 truststore (bundle.pem's roots) as NAME in --out; needs --pkcs12-password-file.",
                               valueName: "NAME"))
    var truststore: String?

    @Option(help: "File holding the password of the PKCS#12 keystore and truststore (one line).")
    var pkcs12PasswordFile: String?

    /// Passwords are a line; a larger file is a mistake.
    static let passwordLimit = 4096

    /// The config file's `files:`, `pkcs12:` and `truststore:`, then the flags, over the defaults;
    /// and the password when a PKCS#12 file is written.
    func resolved(_ file: ConfigFile.AgentSection?) throws -> (OutputFileNames, password: String?) {
        var assignments = (file?.files ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        assignments += [("pkcs12", file?.pkcs12), ("truststore", file?.truststore)].compactMap { kind, name in name.map { "\(kind)=\($0)" } }
        assignments += files
        assignments += [("pkcs12", pkcs12), ("truststore", truststore)].compactMap { kind, name in name.map { "\(kind)=\($0)" } }
        let names: OutputFileNames
        do {
            names = try OutputFileNames.defaults.applying(assignments)
        } catch {
            throw CLIError(error.description)
        }
        let passwordFile = pkcs12PasswordFile ?? file?.pkcs12PasswordFile
        guard names.needsPassword else {
            if passwordFile != nil { throw CLIError("--pkcs12-password-file is only used with --pkcs12 or --truststore") }
            return (names, nil)
        }
        guard let passwordFile else {
            let kinds = names.enabledKinds.filter(\.needsPassword).map { "--\($0.rawValue)" }
            throw CLIError("\(kinds.joined(separator: " and ")) \(kinds.count > 1 ? "need" : "needs") --pkcs12-password-file (the keystore password)")
        }
        var password = try OperatorFile.text(passwordFile, what: "--pkcs12-password-file", limit: Self.passwordLimit)
        while password.last?.isNewline == true { password.removeLast() }
        guard !password.isEmpty else { throw CLIError("--pkcs12-password-file \(passwordFile) is empty") }
        // OpenSSL takes the password as a C string: a NUL would cut it short (an empty password),
        // and bytes that are not UTF-8 were replaced while reading, so the keystore would not open
        // with the file's bytes. One line of text, nothing else.
        guard !password.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0 == "\u{FFFD}" }) else {
            throw CLIError("--pkcs12-password-file \(passwordFile) must hold one line of UTF-8 text without control characters")
        }
        OperatorFile.warnIfShared(passwordFile, what: "--pkcs12-password-file")
        return (names, password)
    }
}
