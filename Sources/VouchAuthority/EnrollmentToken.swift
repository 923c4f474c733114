import Foundation
import VouchCrypto

/// The text form of an enrollment token: `vch.<id>.<secret>`. The id is public
/// (listings, audit); only SHA-256(secret) is stored.
public struct EnrollmentToken: Sendable {
    public let id: String
    public let secret: String

    public var text: String { "vch.\(id).\(secret)" }

    /// A fresh token: 64-bit id, 256-bit secret.
    public static func generate() throws -> EnrollmentToken {
        let id = try randomBytes(8).map { String(format: "%02x", $0) }.joined()
        let secret = Data(try randomBytes(32)).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return EnrollmentToken(id: String(id), secret: secret)
    }

    /// Parses the text form; nil if it is not shaped like a token. Byte-wise and ASCII only,
    /// so no Unicode look-alike reaches the store or a log line.
    public static func parse(_ text: String) -> EnrollmentToken? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.utf8.count <= 160 else { return nil }
        let parts = trimmed.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].elementsEqual("vch".utf8), parts[1].count == 16,
              parts[1].allSatisfy(isHexDigit), (16...128).contains(parts[2].count), parts[2].allSatisfy(isBase64URL)
        else { return nil }
        return EnrollmentToken(id: String(decoding: parts[1], as: UTF8.self).lowercased(),
                               secret: String(decoding: parts[2], as: UTF8.self))
    }

    private static func isHexDigit(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46)
    }

    private static func isBase64URL(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c == 0x2d || c == 0x5f
    }

    public var secretHash: [UInt8] { sha256(Array(secret.utf8)) }
}
