/// A failure from the CA's cryptography, with OpenSSL's own reason when it gave one.
public struct CryptoError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// Input that does not parse (bad DER/PEM).
        case malformed
        /// A signature that does not verify (e.g. CSR proof of possession).
        case badSignature
        /// A key type or size Vouch does not accept.
        case unsupportedKey
        /// A passphrase is missing or wrong.
        case passphrase
        /// A PKCS#11 module, token, PIN or token key that cannot be used as configured.
        case token
        /// The token failed at run time: signatures fail until it recovers.
        case tokenUnavailable
        /// Anything else OpenSSL refused.
        case failure
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
