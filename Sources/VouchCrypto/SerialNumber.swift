internal import CVouchOpenSSL

/// Certificate serial numbers: 128 random bits, positive, at most 17 DER octets.
public enum SerialNumber {
    /// A fresh random serial, as big-endian bytes without leading zero bytes.
    public static func random() throws -> [UInt8] {
        while true {
            let bytes = try randomBytes(16)
            let trimmed = Array(bytes.drop { $0 == 0 })
            // Serials of fewer than 8 bytes are astronomically unlikely; retrying keeps them uniform in size.
            if trimmed.count >= 8 { return trimmed }
        }
    }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes.drop(while: { $0 == 0 }) {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return out.isEmpty ? "0" : String(decoding: out, as: UTF8.self)
    }

    /// Parses a hex serial (any case, optional colons); nil if it is not hex or too long.
    public static func bytes(fromHex text: String) -> [UInt8]? {
        let digits = text.lowercased().filter { $0 != ":" }
        guard !digits.isEmpty, digits.count <= 40, digits.allSatisfy(\.isHexDigit) else { return nil }
        let padded = digits.count % 2 == 1 ? "0" + digits : digits
        var result: [UInt8] = []
        var index = padded.startIndex
        while index < padded.endIndex {
            let next = padded.index(index, offsetBy: 2)
            result.append(UInt8(padded[index..<next], radix: 16)!)
            index = next
        }
        return Array(result.drop { $0 == 0 })
    }

    /// Normalises a user-supplied serial to Vouch's canonical lowercase hex, or nil.
    public static func canonicalHex(_ text: String) -> String? {
        bytes(fromHex: text).map(hex)
    }
}

/// Cryptographically secure random bytes from OpenSSL's DRBG.
public func randomBytes(_ count: Int) throws -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    guard RAND_bytes(&bytes, Int32(count)) == 1 else { throw cryptoFailure(.failure, "RAND_bytes failed") }
    return bytes
}
