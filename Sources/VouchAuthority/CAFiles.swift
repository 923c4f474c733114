import Foundation
import VouchFiles

/// Where `vouch ca init` puts each file of a CA directory.
public struct CAFiles: Sendable {
    public let directory: URL

    public init(directory: String) {
        self.directory = URL(fileURLWithPath: directory, isDirectory: true)
    }

    private func file(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// CA settings written at init (trust domain, whether keys are encrypted).
    public var settings: String { file("ca.json") }
    public var rootCertificate: String { file("root.pem") }
    public var rootKey: String { file("root_key.pem") }
    public var intermediateCertificate: String { file("intermediate.pem") }
    public var intermediateKey: String { file("intermediate_key.pem") }
    /// The trust roots clients need.
    public var bundle: String { file("bundle.pem") }
    /// The CA listener's certificate (leaf + intermediate).
    public var serverCertificate: String { file("server.pem") }
    public var serverKey: String { file("server_key.pem") }
    /// The first admin's client certificate (leaf + intermediate) for the CLI.
    public var adminCertificate: String { file("admin.pem") }
    public var adminKey: String { file("admin_key.pem") }
    public var database: String { file("vouch.db") }
}

/// The settings file of a CA directory.
public struct CASettings: Codable, Sendable {
    public var trustDomain: String
    public var keysEncrypted: Bool
    public var createdAt: Date
    /// The initial intermediate's key when it is in a PKCS#11 token (a `pkcs11:` URI; nil: intermediate_key.pem).
    public var intermediateKey: String?
    /// The initial root's key when it is in a PKCS#11 token (nil: root_key.pem).
    public var rootKey: String?
    /// The PKCS#11 module and token label `ca init` used: the defaults of `--pkcs11-module` and
    /// `--pkcs11-token`. The PIN is never stored.
    public var pkcs11Module: String?
    public var pkcs11Token: String?

    public init(trustDomain: String, keysEncrypted: Bool, createdAt: Date, intermediateKey: String? = nil, rootKey: String? = nil,
                pkcs11Module: String? = nil, pkcs11Token: String? = nil) {
        self.trustDomain = trustDomain
        self.keysEncrypted = keysEncrypted
        self.createdAt = createdAt
        self.intermediateKey = intermediateKey
        self.rootKey = rootKey
        self.pkcs11Module = pkcs11Module
        self.pkcs11Token = pkcs11Token
    }

    // The first three keep the names older ca.json files have; the token's are optional, so those files still load.
    enum CodingKeys: String, CodingKey {
        case trustDomain, keysEncrypted, createdAt
        case intermediateKey = "intermediate_key", rootKey = "root_key", pkcs11Module = "pkcs11_module", pkcs11Token = "pkcs11_token"
    }

    /// Whether the CA's keys were made in a PKCS#11 token.
    public var keysInToken: Bool { pkcs11Token != nil || intermediateKey != nil || rootKey != nil }

    public static func load(from files: CAFiles) throws -> CASettings {
        let data: Data
        do {
            // Bounded: a FIFO or /dev/zero in its place is refused at once instead of hanging or filling memory.
            data = try SmallFile.read(files.settings, limit: 64 * 1024)
        } catch .unreadable {
            throw AuthorityError(.notFound, "no CA in \(files.directory.path) (missing ca.json): run `vouch ca init` first")
        } catch {
            throw AuthorityError(.failedPrecondition, "\(files.settings) \(error)")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(CASettings.self, from: data)
    }

    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self)) + [0x0a]
    }
}
