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

    public init(trustDomain: String, keysEncrypted: Bool, createdAt: Date) {
        self.trustDomain = trustDomain
        self.keysEncrypted = keysEncrypted
        self.createdAt = createdAt
    }

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
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(try encoder.encode(self)) + [0x0a]
    }
}
