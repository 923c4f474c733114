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

    /// Parses a hex serial (ASCII digits and letters in any case, optional colons); nil if it is
    /// not hex or longer than 20 octets. Works on bytes: Unicode "hex digits" such as fullwidth
    /// letters are refused rather than half-accepted.
    public static func bytes(fromHex text: String) -> [UInt8]? {
        guard text.utf8.count <= 128 else { return nil }
        var nibbles: [UInt8] = []
        for byte in text.utf8 where byte != UInt8(ascii: ":") {
            guard let value = nibble(byte) else { return nil }
            nibbles.append(value)
        }
        guard !nibbles.isEmpty, nibbles.count <= 40 else { return nil }
        if nibbles.count % 2 == 1 { nibbles.insert(0, at: 0) }
        let result = stride(from: 0, to: nibbles.count, by: 2).map { nibbles[$0] << 4 | nibbles[$0 + 1] }
        return Array(result.drop { $0 == 0 })
    }

    private static func nibble(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
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
