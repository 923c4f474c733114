internal import CVouchOpenSSL
import Foundation

/// Answers RFC 6960 OCSP requests for certificates of the CA's issuing certificates (the
/// active intermediate and those retiring), each answer signed by the key of the issuer the
/// request names (OpenSSL's OCSP API).
public struct OCSPResponder: Sendable {
    public enum Status: Sendable, Equatable {
        case good
        case revoked(at: Date, reason: Int)
        case unknown
    }

    /// The issuers answered for, in order of preference: a CertID matching several (an
    /// intermediate and its cross certificate share subject and key) is answered by the first.
    let issuers: [CertificateSigner]
    /// How long a response may be cached (nextUpdate - thisUpdate).
    let validity: TimeInterval
    /// Octets of the longest serial looked up; longer ones (Vouch issues 16) are answered unknown.
    static let longestSerialLookedUp = 64

    public init(issuers: [CertificateSigner], validity: TimeInterval = 3600) {
        self.issuers = issuers
        self.validity = validity
    }

    public init(signer: CertificateSigner, validity: TimeInterval = 3600) {
        self.init(issuers: [signer], validity: validity)
    }

    /// A DER OCSPResponse for a DER OCSPRequest; `lookup` gets each lowercase hex serial with
    /// the issuer its CertID names. The response is signed by the issuer of the first request
    /// entry that names one of `issuers`; entries naming another issuer are answered unknown.
    /// A request naming none of them gets `unauthorized` (RFC 6960 2.3: this responder cannot
    /// answer for that CA); a malformed one gets `malformedRequest`.
    public func respond(to requestDER: [UInt8], now: Date = Date(),
                        lookup: (_ serial: String, _ issuer: CertificateSigner) async -> Status) async -> [UInt8] {
        guard let request = requestDER.withUnsafeBufferPointer({ vouch_ocsp_request_parse($0.baseAddress, $0.count) }) else {
            return Self.errorResponse(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST)
        }
        defer { OCSP_REQUEST_free(request) }
        let count = Int(vouch_ocsp_request_count(request))
        guard count > 0, count <= 100 else { return Self.errorResponse(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST) }
        // For each entry, the serial and the issuer whose name and key hashes its CertID carries.
        let entries: [(serial: [UInt8]?, issuer: Int?)] = (0..<count).map { index in
            for (position, issuer) in issuers.enumerated() {
                let match: (serial: [UInt8]?, issuer: Int?)? = issuer.certificate.withUnsafeX509Pointer { certificate in
                    var ours: Int32 = 0
                    guard let serial = vouch_ocsp_request_serial(request, Int32(index), certificate, &ours), ours == 1 else { return nil }
                    guard let bytes = integerBytes(serial), bytes.count <= Self.longestSerialLookedUp else { return (nil, position) }
                    return (bytes, position)
                }
                if let match { return match }
            }
            return (nil, nil)
        }
        guard let signing = entries.lazy.compactMap(\.issuer).first else {
            return Self.errorResponse(OCSP_RESPONSE_STATUS_UNAUTHORIZED)
        }
        let signer = issuers[signing]
        var statuses: [Int32] = [], times: [Int] = [], reasons: [Int32] = []
        for entry in entries {
            var status = Status.unknown
            if let serial = entry.serial, entry.issuer == signing {
                status = await lookup(SerialNumber.hex(serial), signer)
            }
            switch status {
            case .good:
                statuses.append(V_OCSP_CERTSTATUS_GOOD); times.append(0); reasons.append(0)
            case .revoked(let at, let reason):
                statuses.append(V_OCSP_CERTSTATUS_REVOKED); times.append(Int(at.timeIntervalSince1970)); reasons.append(Int32(reason))
            case .unknown:
                statuses.append(V_OCSP_CERTSTATUS_UNKNOWN); times.append(0); reasons.append(0)
            }
        }
        var out: UnsafeMutablePointer<UInt8>?
        let thisUpdate = Int(now.timeIntervalSince1970), nextUpdate = Int(now.addingTimeInterval(validity).timeIntervalSince1970)
        let length = signer.certificate.withUnsafeX509Pointer { certificate in
            signer.key.withUnsafeKeyPointer { key in
                vouch_ocsp_response_build(request, certificate, key, statuses, times, reasons, thisUpdate, nextUpdate, &out)
            }
        }
        guard length > 0, let out else {
            // A token that failed is a passing condition: RFC 6960 asks the client to try later.
            let failure = signer.key.signingFailure("OCSP response signing failed")
            return Self.errorResponse(failure.kind == .tokenUnavailable ? OCSP_RESPONSE_STATUS_TRYLATER
                                                                        : OCSP_RESPONSE_STATUS_INTERNALERROR)
        }
        defer { vouch_openssl_free(out) }
        return Array(UnsafeBufferPointer(start: out, count: Int(length)))
    }

    static func errorResponse(_ status: Int32) -> [UInt8] {
        var out: UnsafeMutablePointer<UInt8>?
        let length = vouch_ocsp_error_response(status, &out)
        guard length > 0, let out else { return [] }
        defer { vouch_openssl_free(out) }
        return Array(UnsafeBufferPointer(start: out, count: Int(length)))
    }
}
