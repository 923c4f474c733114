import Foundation
import VouchCrypto

extension PKCS11Token {
    /// Why the server cannot sign with this token now, as /healthz, gRPC health and the log say it;
    /// nil while it works. A failed token is retried (TokenWatch); a refused PIN never is.
    public var unhealthyReason: String? {
        switch status {
        case .ok:
            return nil
        case .failed(let reason, let since):
            return "\(naming(reason)) since \(since.formatted(.iso8601)); retrying"
        case .pinRefused(let reason):
            return "\(naming(reason)); restart the server with the right PIN"
        }
    }

    /// `reason` (a CKR_ name, or the token layer's sentence) after the token's name, said once.
    private func naming(_ reason: String) -> String {
        reason.hasPrefix("token \"\(label)\"") ? "PKCS#11 " + reason : "PKCS#11 token \"\(label)\": " + reason
    }
}
