import ArgumentParser
import Foundation
import VouchAuthority
import VouchCrypto

/// `--pkcs11-*` of the CA commands: the PKCS#11 token that holds the CA's keys, and optionally a
/// second token for root keys alone, whose PIN servers never get. The module and the token's
/// label default to what `ca init` recorded in ca.json; the PIN comes only from a file and is
/// never stored.
struct PKCS11Options: ParsableArguments {
    @Option(name: .customLong("pkcs11-module"),
            help: ArgumentHelp("PKCS#11 module (.so) of the token holding the CA keys (default: ca.json's).", valueName: "path"))
    var module: String?

    @Option(name: .customLong("pkcs11-token"),
            help: ArgumentHelp("Label of the token holding the intermediate keys (default: ca.json's).", valueName: "label"))
    var token: String?

    @Option(name: .customLong("pkcs11-pin-file"),
            help: ArgumentHelp("File holding that token's user PIN: with it the CA keys are made and used in the token.", valueName: "file"))
    var pinFile: String?

    @Option(name: .customLong("pkcs11-root-token"),
            help: ArgumentHelp("Label of a token for root keys alone, whose PIN servers never get (default: the root key's token).",
                               valueName: "label"))
    var rootToken: String?

    @Option(name: .customLong("pkcs11-root-pin-file"), help: ArgumentHelp("File holding the root token's user PIN.", valueName: "file"))
    var rootPinFile: String?

    /// Whether any `--pkcs11-*` flag was given.
    var isGiven: Bool { module != nil || token != nil || pinFile != nil || rootToken != nil || rootPinFile != nil }

    /// The token of `--pkcs11-token` (else ca.json's), logged in; nil without `--pkcs11-pin-file`.
    func openToken(settings: CASettings?) throws -> PKCS11Token? {
        try PKCS11Opening.open(module: module, token: token, pinFile: pinFile, settings: settings, flags: .intermediate)
    }

    /// The token of `--pkcs11-root-token` (else `label`), logged in with `--pkcs11-root-pin-file`;
    /// nil without that file.
    func openRootToken(label: String?, settings: CASettings?) throws -> PKCS11Token? {
        guard rootPinFile != nil else {
            if rootToken != nil { throw CLIError("--pkcs11-root-token needs --pkcs11-root-pin-file (that token's user PIN)") }
            return nil
        }
        return try PKCS11Opening.open(module: module, token: rootToken ?? label, pinFile: rootPinFile, settings: settings, flags: .root)
    }
}

/// Opening a token from flags (or the server's config keys) with a PIN file: each bad
/// configuration refused in one line that names the flag to fix.
enum PKCS11Opening {
    /// Which flags name the token, for messages.
    struct Flags {
        let token: String
        let pinFile: String
        static let intermediate = Flags(token: "--pkcs11-token", pinFile: "--pkcs11-pin-file")
        static let root = Flags(token: "--pkcs11-root-token", pinFile: "--pkcs11-root-pin-file")
    }

    /// PINs are short; a larger file is a mistake.
    static let pinLimit = 4096

    /// The token `token` of `module` (each defaulting to ca.json's), logged in with the PIN in
    /// `pinFile`; nil when no PIN file is given (and no module or token either).
    static func open(module: String?, token: String?, pinFile: String?, settings: CASettings?, flags: Flags) throws -> PKCS11Token? {
        guard let pinFile else {
            if module != nil || token != nil {
                throw CLIError("--pkcs11-module and \(flags.token) need \(flags.pinFile) (the token's user PIN)")
            }
            return nil
        }
        guard let module = module ?? settings?.pkcs11Module else {
            throw CLIError("\(flags.pinFile) needs --pkcs11-module (the PKCS#11 library of the token)")
        }
        guard let label = token ?? settings?.pkcs11Token else {
            throw CLIError("\(flags.pinFile) needs \(flags.token) (the token's label)")
        }
        let pin = try readPIN(pinFile, flag: flags.pinFile)
        do {
            let token = try PKCS11Token.open(module: module, token: label, pin: pin)
            OperatorFile.warnIfShared(pinFile, what: flags.pinFile) // a PIN the token took, readable by others
            return token
        } catch let error as CryptoError {
            throw CLIError(message(error.message, pinFile: pinFile, flags: flags))
        }
    }

    /// The PIN: the file's one line (one trailing newline dropped). Refused when empty, or holding a
    /// NUL or a second line: the token would get another PIN than the file shows, and a real HSM
    /// counts the failure.
    static func readPIN(_ path: String, flag: String) throws -> String {
        var pin = try OperatorFile.text(path, what: flag, limit: pinLimit)
        if pin.hasSuffix("\r\n") {
            pin.removeLast(2)
        } else if pin.hasSuffix("\n") {
            pin.removeLast()
        }
        guard !pin.isEmpty else { throw CLIError("\(flag) \(path) is empty") }
        guard !pin.contains(where: { $0 == "\0" || $0.isNewline }) else {
            throw CLIError("\(flag) \(path) holds more than one line (the PIN is the file's one line)")
        }
        return pin
    }

    /// The token layer's refusal, with the PIN file named when the PIN was refused.
    static func message(_ text: String, pinFile: String, flags: Flags) -> String {
        guard text.contains("PIN"), !text.contains(pinFile) else { return text }
        return "\(flags.pinFile) \(pinFile): \(text)"
    }
}

extension PKCS11Opening {
    /// A server started without a token refuses a CA whose intermediates (not retired) have their
    /// keys in one, naming the first, instead of signing with an older intermediate it can load.
    static func refuseTokenKeysWithoutToken(in store: any AuthorityStore, token: PKCS11Token?) async throws {
        guard token == nil else { return }
        let intermediates = try await store.issuers().issuers.filter { $0.kind == .intermediate && $0.state != .retired }
        guard let first = intermediates.first(where: { TokenKeyReference.isReference($0.keyRef) }) else { return }
        _ = try IssuerKeys.load(first, keys: KeyAccess())
    }
}

/// The tokens one CA command opened: the intermediate keys' token at once (new intermediate keys
/// go there, `ca admin-cert` signs with it), a root token only when a step needs a root key.
final class CommandTokens {
    let options: PKCS11Options
    let settings: CASettings
    /// `--pkcs11-token` with `--pkcs11-pin-file`.
    let token: PKCS11Token?
    private var opened: [String: PKCS11Token] = [:]

    init(options: PKCS11Options, settings: CASettings) throws {
        self.options = options
        self.settings = settings
        token = try options.openToken(settings: settings)
        if let token { opened[token.label] = token }
    }

    /// The logged-in token holding the root key `reference` names: `--pkcs11-root-token` with
    /// `--pkcs11-root-pin-file`, or the intermediate keys' token when the root key is there too.
    func rootToken(for reference: TokenKeyReference) throws -> PKCS11Token {
        try rootToken(named: reference.token)
    }

    private func rootToken(named label: String) throws -> PKCS11Token {
        if let token = opened[label] { return token }
        if options.rootPinFile != nil, options.rootToken == nil || options.rootToken == label,
           let token = try options.openRootToken(label: label, settings: settings) {
            opened[token.label] = token
            return token
        }
        if label == (options.token ?? settings.pkcs11Token) {
            throw CLIError("the root key is in PKCS#11 token \(label.debugDescription): pass --pkcs11-pin-file (its user PIN)")
        }
        throw CLIError("""
            the root key is in PKCS#11 token \(label.debugDescription): pass --pkcs11-root-pin-file (its user PIN) \
            and --pkcs11-root-token \(label)
            """)
    }

    /// Where a new root key goes: `--pkcs11-root-token`, else the token of the current root's key
    /// when that is a root token, else the intermediate keys' token (with a warning: whoever holds
    /// its PIN, a server, can then sign with the root); nil: a key file, as without a token.
    func tokenForNewRoot(current: TokenKeyReference?) throws -> PKCS11Token? {
        if let label = options.rootToken { return try rootToken(named: label) }
        if let current, current.token != token?.label { return try rootToken(named: current.token) }
        if options.rootPinFile != nil { throw CLIError("--pkcs11-root-pin-file needs --pkcs11-root-token (the root token's label)") }
        if let token {
            warnRootInSameToken(token)
            return token
        }
        return nil
    }

    /// Deletes keys a failed step made (nothing refers to them).
    func destroy(_ made: [TokenKeyReference]) {
        for reference in made {
            do {
                try opened[reference.token]?.destroyKey(reference)
            } catch {
                // Nothing refers to the key, but it stays in the token: say so, with what removes it.
                FileHandle.standardError.write(Data("""
                    vouch: warning: the key \(reference) made by the failed step stays in the token (\(error)); remove it with \
                    pkcs11-tool --login --delete-object --type privkey --id \(reference.idHex) (and --type pubkey)

                    """.utf8))
            }
        }
    }
}

/// The root key in the token whose PIN a server gets lets that server sign as the root.
func warnRootInSameToken(_ token: PKCS11Token) {
    FileHandle.standardError.write(Data("""
        vouch: warning: the root key goes into token \(token.label.debugDescription) too: a server holding its PIN can reach \
        the root key; keep roots in a token of their own (--pkcs11-root-token and --pkcs11-root-pin-file)

        """.utf8))
}
