internal import CVouchOpenSSL
import Foundation

/// Answers RFC 6960 OCSP requests for certificates of one issuing CA, signing
/// with that CA's key (OpenSSL's OCSP API).
public struct OCSPResponder: Sendable {
    public enum Status: Sendable, Equatable {
        case good
        case revoked(at: Date, reason: Int)
        case unknown
    }

    let signer: CertificateSigner
    /// How long a response may be cached (nextUpdate - thisUpdate).
    let validity: TimeInterval
    /// Octets of the longest serial looked up; longer ones (Vouch issues 16) are answered unknown.
    static let longestSerialLookedUp = 64

    public init(signer: CertificateSigner, validity: TimeInterval = 3600) {
        self.signer = signer
        self.validity = validity
    }

    /// A DER OCSPResponse for a DER OCSPRequest; `lookup` gets each lowercase hex serial
    /// issued by this CA. Malformed requests get a malformedRequest response.
    public func respond(to requestDER: [UInt8], now: Date = Date(), lookup: (String) async -> Status) async -> [UInt8] {
        guard let request = requestDER.withUnsafeBufferPointer({ vouch_ocsp_request_parse($0.baseAddress, $0.count) }) else {
            return Self.errorResponse(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST)
        }
        defer { OCSP_REQUEST_free(request) }
        let count = Int(vouch_ocsp_request_count(request))
        guard count > 0, count <= 100 else { return Self.errorResponse(OCSP_RESPONSE_STATUS_MALFORMEDREQUEST) }
        // Serials this CA may have issued; nil for the others, which are unknown without a lookup.
        let serials: [[UInt8]?] = signer.certificate.withUnsafeX509Pointer { issuer in
            (0..<count).map { index in
                var ours: Int32 = 0
                guard let serial = vouch_ocsp_request_serial(request, Int32(index), issuer, &ours), ours == 1,
                      let bytes = integerBytes(serial), bytes.count <= Self.longestSerialLookedUp else { return nil }
                return bytes
            }
        }
        var statuses: [Int32] = [], times: [Int] = [], reasons: [Int32] = []
        for serial in serials {
            var status = Status.unknown
            if let serial {
                status = await lookup(SerialNumber.hex(serial))
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
        guard length > 0, let out else { return Self.errorResponse(OCSP_RESPONSE_STATUS_INTERNALERROR) }
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
