import Foundation

/// Where a CA key lives in a PKCS#11 token, as a PKCS#11 URI (RFC 7512):
/// `pkcs11:token=<token label>;object=<key label>;id=<CKA_ID, %-encoded>`.
/// It names the key, never a PIN: the PIN comes from the process's flags or configuration only.
public struct TokenKeyReference: Hashable, Sendable, CustomStringConvertible {
    public let token: String
    public let object: String
    public let id: [UInt8]

    public init(token: String, object: String, id: [UInt8]) {
        self.token = token
        self.object = object
        self.id = id
    }

    public static func isReference(_ text: String) -> Bool { text.hasPrefix(scheme) }

    private static let scheme = "pkcs11:"

    public init(parsing uri: String) throws {
        guard Self.isReference(uri), uri.utf8.count <= 1024 else {
            throw CryptoError(.token, "\(Self.shown(uri)) is not a PKCS#11 URI (pkcs11:token=...;object=...;id=...)")
        }
        let body = uri.dropFirst(Self.scheme.count)
        let path = body.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        if path.count > 1, path[1].split(separator: "&").contains(where: { $0.hasPrefix("pin-") }) {
            throw CryptoError(.token, "a PKCS#11 URI with a PIN in it is refused: give the PIN in a file (--pkcs11-pin-file)")
        }
        var token: String?, object: String?, id: [UInt8]?
        for attribute in path[0].split(separator: ";") {
            let pair = attribute.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pair.count == 2, let value = Self.percentDecoded(pair[1]) else {
                throw CryptoError(.token, "\(Self.shown(uri)): \(Self.shown(String(attribute))) is not attribute=value")
            }
            switch pair[0] {
            case "token": token = String(decoding: value, as: UTF8.self)
            case "object": object = String(decoding: value, as: UTF8.self)
            case "id": id = value
            case "pin-value", "pin-source":
                throw CryptoError(.token, "a PKCS#11 URI with a PIN in it is refused: give the PIN in a file (--pkcs11-pin-file)")
            default: continue // type=private and the like narrow nothing Vouch looks up
            }
        }
        guard let token, !token.isEmpty, token.utf8.count <= 32, let id, !id.isEmpty, id.count <= 64 else {
            throw CryptoError(.token, "\(Self.shown(uri)) names no token (1-32 bytes) and key id (1-64 bytes)")
        }
        self.init(token: token, object: object ?? "", id: id)
    }

    public var description: String {
        var text = Self.scheme + "token=" + Self.percentEncoded(Array(token.utf8))
        if !object.isEmpty { text += ";object=" + Self.percentEncoded(Array(object.utf8)) }
        return text + ";id=" + id.map { "%" + String($0, radix: 16, uppercase: false).leftPadded() }.joined()
    }

    /// The key id as hex, for labels and messages.
    public var idHex: String { id.map { String($0, radix: 16).leftPadded() }.joined() }

    private static func percentEncoded(_ bytes: [UInt8]) -> String {
        var text = ""
        for byte in bytes {
            let scalar = Unicode.Scalar(byte)
            if byte < 0x80, scalar.properties.isASCIIHexDigit || (0x41...0x5a).contains(byte) || (0x61...0x7a).contains(byte)
                || "-._~".unicodeScalars.contains(scalar) {
                text.unicodeScalars.append(scalar)
            } else {
                text += "%" + String(byte, radix: 16).leftPadded()
            }
        }
        return text
    }

    private static func percentDecoded(_ text: Substring) -> [UInt8]? {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard utf8.count >= 2, let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) else {
                return nil
            }
            bytes.append(value)
            utf8 = utf8.dropFirst(2)
        }
        return bytes
    }

    private static func shown(_ text: String) -> String {
        let clipped = text.unicodeScalars.prefix(120).map { $0.properties.generalCategory == .control ? "?" : Character($0) }
        return "\"" + String(clipped) + (text.unicodeScalars.count > 120 ? "..." : "") + "\""
    }
}

private extension String {
    func leftPadded() -> String { count == 1 ? "0" + self : self }
}
