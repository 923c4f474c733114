internal import CVouchOpenSSL
import Foundation

/// A PKCS#11 token holding CA keys: generated inside it, never extractable, used by OpenSSL through
/// keys whose signatures the token makes (see pkcs11.c). The PIN stays in memory in the C layer, for
/// logging in again after the token recovers; it is never written anywhere.
public final class PKCS11Token: @unchecked Sendable {
    public let modulePath: String
    public let label: String
    // Owned; the C layer locks around every call. Every token key holds this object, so the
    // token is closed only after its last key is gone.
    private let handle: OpaquePointer

    private init(modulePath: String, label: String, handle: OpaquePointer) {
        self.modulePath = modulePath
        self.label = label
        self.handle = handle
    }

    deinit { vouch_p11_close(handle) }

    /// Loads the module, finds the token by its label and logs in (one attempt).
    public static func open(module: String, token: String, pin: String) throws -> PKCS11Token {
        guard !pin.utf8.contains(0) else { throw CryptoError(.token, "the PIN holds a NUL byte") }
        var error = [CChar](repeating: 0, count: 512)
        guard let handle = vouch_p11_open(module, token, pin, &error, error.count) else {
            throw CryptoError(.token, decodeCString(error))
        }
        return PKCS11Token(modulePath: module, label: token, handle: handle)
    }

    /// A new key pair inside the token: the private key sensitive, never extractable, for signing only.
    public func generateKey(_ algorithm: KeyAlgorithm = .p256, label keyLabel: String) throws
        -> (reference: TokenKeyReference, key: PrivateKey) {
        let nid: Int32
        switch algorithm {
        case .p256: nid = NID_X9_62_prime256v1
        case .p384: nid = NID_secp384r1
        default: throw CryptoError(.token, "keys in a token are EC P-256 or P-384")
        }
        var id = [UInt8](repeating: 0, count: 16)
        guard RAND_bytes(&id, Int32(id.count)) == 1 else { throw cryptoFailure(.failure, "no random bytes for a key id") }
        var error = [CChar](repeating: 0, count: 512)
        guard vouch_p11_generate(handle, nid, keyLabel, id, id.count, &error, error.count) == 0 else {
            throw CryptoError(.token, decodeCString(error))
        }
        let reference = TokenKeyReference(token: label, object: keyLabel, id: id)
        return (reference, try key(reference))
    }

    /// The key `reference` names, checked (EC P-256/P-384, may sign, sensitive, not extractable) and
    /// proven: a signature made in the token verifies with its public key.
    public func key(_ reference: TokenKeyReference) throws -> PrivateKey {
        guard reference.token == label else {
            throw CryptoError(.token, "the key \(reference) is in token \"\(reference.token)\", not in the configured token \"\(label)\"")
        }
        var error = [CChar](repeating: 0, count: 512)
        let object = reference.object.isEmpty ? nil : reference.object
        let pointer: OpaquePointer? = reference.id.withUnsafeBufferPointer { id in
            if let object {
                return object.withCString { vouch_p11_find_key(handle, id.baseAddress, id.count, $0, &error, error.count) }
            }
            return vouch_p11_find_key(handle, id.baseAddress, id.count, nil, &error, error.count)
        }
        guard let pointer else { throw CryptoError(.token, decodeCString(error)) }
        let key = PrivateKey(owning: pointer, token: self)
        guard vouch_p11_self_test(pointer) == 1 else {
            let rv = vouch_p11_take_sign_error()
            _ = openSSLErrors()
            if rv != 0 { throw CryptoError(.token, "token \"\(label)\" cannot sign with \(reference): \(rvName(rv))") }
            throw CryptoError(.token, "the private key \(reference) does not match the public key stored with it")
        }
        return key
    }

    /// Deletes a key pair, e.g. the new key of a rotation step that failed.
    public func destroyKey(_ reference: TokenKeyReference) throws {
        var error = [CChar](repeating: 0, count: 512)
        guard vouch_p11_destroy(handle, reference.id, reference.id.count, &error, error.count) == 0 else {
            throw CryptoError(.token, decodeCString(error))
        }
    }

    public enum Status: Sendable, Equatable {
        case ok
        /// Signing fails fast until `recover()` succeeds; `reason` names the PKCS#11 return value.
        case failed(reason: String, since: Date)
        /// The token refused the PIN when logging in again; never retried (hardware tokens lock).
        case pinRefused(reason: String)
    }

    public var status: Status { Self.status(vouch_p11_status(handle, nil, nil, nil, 0), handle) }

    /// Checks the token answers without signing; a token that does not is marked failed.
    @discardableResult public func probe() -> Status { Self.status(vouch_p11_probe(handle), handle) }

    /// Re-initializes the module, logs in once, finds every loaded key again and checks its public
    /// key did not change.
    @discardableResult public func recover() -> Status { Self.status(vouch_p11_recover(handle), handle) }

    private static func status(_ state: Int32, _ handle: OpaquePointer) -> Status {
        var since = 0
        var reason = [CChar](repeating: 0, count: 256)
        let current = vouch_p11_status(handle, nil, &since, &reason, reason.count)
        _ = state // the state the call saw; `current` also holds since and reason, read together
        switch current {
        case VOUCH_P11_OK: return .ok
        case VOUCH_P11_PIN_REFUSED: return .pinRefused(reason: decodeCString(reason))
        default: return .failed(reason: decodeCString(reason), since: Date(timeIntervalSince1970: TimeInterval(since)))
        }
    }
}

func rvName(_ rv: UInt) -> String { String(cString: vouch_p11_rv_name(rv)) }

extension PrivateKey {
    /// The error for a signature that failed: a token key whose token failed says so
    /// (`tokenUnavailable`), anything else carries OpenSSL's reason.
    func signingFailure(_ what: String) -> CryptoError {
        let rv = vouch_p11_take_sign_error()
        guard let token, rv != 0 else { return cryptoFailure(.failure, what) }
        _ = openSSLErrors() // the bridge's failure leaves unrelated noise in OpenSSL's queue
        return CryptoError(.tokenUnavailable, "PKCS#11 token \"\(token.label)\": \(rvName(rv))")
    }
}
