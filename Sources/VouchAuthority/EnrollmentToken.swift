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

    /// Parses the text form; nil if it is not shaped like a token.
    public static func parse(_ text: String) -> EnrollmentToken? {
        let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "vch", parts[1].count == 16, parts[1].allSatisfy(\.isHexDigit),
              (16...128).contains(parts[2].count) else { return nil }
        return EnrollmentToken(id: String(parts[1]).lowercased(), secret: String(parts[2]))
    }

    public var secretHash: [UInt8] { sha256(Array(secret.utf8)) }
}
