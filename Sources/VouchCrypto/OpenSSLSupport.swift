internal import CVouchOpenSSL
import Foundation
import VouchIdentityRules

/// Drains OpenSSL's thread-local error queue into one line; call it in the same
/// synchronous function that saw the failure.
func openSSLErrors() -> String {
    var reasons: [String] = []
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        reasons.append(decodeCString(buffer))
    }
    return reasons.joined(separator: "; ")
}

func cryptoFailure(_ kind: CryptoError.Kind, _ what: String) -> CryptoError {
    let detail = openSSLErrors()
    return CryptoError(kind, detail.isEmpty ? what : "\(what): \(detail)")
}

/// Decodes a NUL-terminated C buffer (String(cString:) on arrays is deprecated).
func decodeCString(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// The magnitude of an ASN.1 INTEGER (a serial number) as big-endian bytes without leading zeros.
func integerBytes(_ integer: UnsafePointer<ASN1_INTEGER>) -> [UInt8]? {
    guard let bn = ASN1_INTEGER_to_BN(integer, nil) else { return nil }
    defer { BN_free(bn) }
    var bytes = [UInt8](repeating: 0, count: Int((BN_num_bits(bn) + 7) / 8))
    BN_bn2bin(bn, &bytes)
    return bytes
}

/// Runs `body` with a fresh memory BIO and returns what was written to it.
func withMemoryBIO(_ body: (OpaquePointer) throws -> Void) throws -> [UInt8] {
    guard let bio = BIO_new(BIO_s_mem()) else { throw cryptoFailure(.failure, "BIO_new failed") }
    defer { BIO_free(bio) }
    try body(bio)
    var data: UnsafeMutablePointer<CChar>?
    let length = vouch_bio_mem_data(bio, &data)
    guard length > 0, let data else { return [] }
    return data.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
}

/// Runs `body` with a read-only memory BIO over `bytes`.
func withReadBIO<T>(_ bytes: [UInt8], _ body: (OpaquePointer) throws -> T) throws -> T {
    try bytes.withUnsafeBytes { raw in
        guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else {
            throw cryptoFailure(.failure, "BIO_new_mem_buf failed")
        }
        defer { BIO_free(bio) }
        return try body(bio)
    }
}

/// DER-encodes an OpenSSL object with its i2d function.
func derEncode(_ encode: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?) -> Int32) throws -> [UInt8] {
    var out: UnsafeMutablePointer<UInt8>?
    let length = encode(&out)
    guard length > 0, let out else { throw cryptoFailure(.failure, "DER encoding failed") }
    defer { vouch_openssl_free(out) }
    return Array(UnsafeBufferPointer(start: out, count: Int(length)))
}

/// Converts an ASN1_TIME to a Date.
func date(fromASN1 time: UnsafePointer<ASN1_TIME>?) -> Date? {
    guard let time else { return nil }
    var parts = tm()
    guard ASN1_TIME_to_tm(time, &parts) == 1 else { return nil }
    return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
}

/// Reads the subjectAltName entries of a GENERAL_NAMES stack.
func readSubjectAltNames(_ names: OpaquePointer?) -> SubjectAltNames {
    guard let names else { return SubjectAltNames() }
    defer { vouch_general_names_free(names) }
    var result = SubjectAltNames()
    for index in 0..<vouch_general_names_count(names) {
        var data: UnsafePointer<UInt8>?
        var length: Int32 = 0
        let type = vouch_general_name_at(names, index, &data, &length)
        guard type >= 0, let data else { continue }
        let bytes = Array(UnsafeBufferPointer(start: data, count: Int(length)))
        switch type {
        case GEN_URI: result.uris.append(String(decoding: bytes, as: UTF8.self))
        case GEN_DNS: result.dnsNames.append(String(decoding: bytes, as: UTF8.self))
        case GEN_IPADD: result.ipAddresses.append(IPAddress.format(bytes))
        default: result.others += 1
        }
    }
    return result
}
