import VouchCrypto

extension AuthorityError {
    /// A signature the CA could not make. A PKCS#11 token that failed at run time answers
    /// unavailable, naming the token and its reason: the client retries, and the server signs
    /// again once the token is back, unless the token refused the PIN (CKR_PIN_*), which is never
    /// tried again. Anything else is `otherwise`.
    init(signing error: CryptoError, otherwise kind: Kind = .internal) {
        if error.kind == .tokenUnavailable {
            let next = error.message.contains("CKR_PIN_") ? "not retried: the server needs restarting with the right PIN" : "retrying"
            self.init(.unavailable, "the signing key is unavailable: \(error.message); \(next)")
        } else {
            self.init(kind, error.message)
        }
    }
}
