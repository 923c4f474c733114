import Foundation
import VouchCrypto

/// What opens the CA's keys: the CA directory (key files), the CA passphrase (encrypted keys) and
/// the PKCS#11 token this process logged in to (keys whose reference is a `pkcs11:` URI). Key
/// loading takes this instead of separate arguments, so a new place for keys is one field.
public struct KeyAccess: Sendable {
    /// The CA directory, where key files are (nil for a CA made in memory).
    public var files: CAFiles?
    /// The CA passphrase: it decrypts key files and keys kept encrypted in the database.
    public var passphrase: String?
    /// The token the process opened with `--pkcs11-module`/`--pkcs11-pin-file`, if any.
    public var token: PKCS11Token?
    /// ca.json's `intermediate_key`: the initial intermediate's key when it is in a token
    /// (its issuer row says `initial`).
    public var initialKeyRef: String?

    public init(files: CAFiles? = nil, passphrase: String? = nil, token: PKCS11Token? = nil, initialKeyRef: String? = nil) {
        self.files = files
        self.passphrase = passphrase
        self.token = token
        self.initialKeyRef = initialKeyRef
    }

    /// The key `uri` names, from the configured token. Throws `failedPrecondition` with the reason
    /// alone (callers say whose key it is): no token configured, a reference to another token, or
    /// the token's own refusal (no such key, not EC, extractable…).
    public func tokenKey(_ uri: String) throws -> PrivateKey {
        let reference: TokenKeyReference
        do {
            reference = try TokenKeyReference(parsing: uri)
        } catch {
            throw AuthorityError(.failedPrecondition, "its key reference \(AuthorityError.quoted(uri)) is not valid: \(Self.message(error))")
        }
        guard let token else {
            throw AuthorityError(.failedPrecondition, """
                its key is in PKCS#11 token \(reference.token.debugDescription): start with --pkcs11-module and \
                --pkcs11-pin-file (or pkcs11_* in the config file)
                """)
        }
        guard reference.token == token.label else {
            throw AuthorityError(.failedPrecondition,
                                 "its key is in token \(reference.token.debugDescription), not the configured \(token.label.debugDescription)")
        }
        do {
            return try token.key(reference)
        } catch {
            throw AuthorityError(.failedPrecondition, Self.message(error))
        }
    }

    static func message(_ error: any Error) -> String {
        switch error {
        case let error as CryptoError: return error.message
        case let error as AuthorityError: return error.message
        default: return "\(error)"
        }
    }
}
