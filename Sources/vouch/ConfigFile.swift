import Foundation
import VouchAPI
import VouchAuthority
import VouchCrypto
import VouchFiles
import Yams

/// The `--config` file of `vouch server` and `vouch agent`: one YAML file with a `server:`
/// and an `agent:` section. Every key is optional and a flag given on the command line wins.
/// docs/configuration.md lists every key with its default.
struct ConfigFile: Decodable {
    var server: ServerSection?
    var agent: AgentSection?

    struct ServerSection: Decodable {
        var dir: String?
        var listen: String?
        var http: String?
        var crlURL: String?
        var passphraseFile: String?
        var defaultTTL: String?
        var maxTTL: String?
        var admins: [String]?
        var logLevel: String?
        var logFormat: String?
        var profiles: [Profile]?
        var handshakeTimeout: String?
        var idleTimeout: String?
        var maxConnections: Int?
        var renewalRetryWindow: String?
        var selfRevocationLimit: Int?
        var auditCheckpointInterval: String?
        var database: String?
        var databasePasswordFile: String?
        var serverCertTTL: String?
        var renewAfterExpiry: String?
        var agentStaleAfter: String?
        var pkcs11Module: String?
        var pkcs11Token: String?
        var pkcs11PinFile: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case dir, listen, http, admins, profiles, database
            case databasePasswordFile = "database_password_file"
            case crlURL = "crl_url", passphraseFile = "passphrase_file", defaultTTL = "default_ttl", maxTTL = "max_ttl"
            case logLevel = "log_level", logFormat = "log_format"
            case handshakeTimeout = "handshake_timeout", idleTimeout = "idle_timeout", maxConnections = "max_connections"
            case renewalRetryWindow = "renewal_retry_window", selfRevocationLimit = "self_revocation_limit"
            case auditCheckpointInterval = "audit_checkpoint_interval"
            case serverCertTTL = "server_cert_ttl", renewAfterExpiry = "renew_after_expiry"
            case agentStaleAfter = "agent_stale_after"
            case pkcs11Module = "pkcs11_module", pkcs11Token = "pkcs11_token", pkcs11PinFile = "pkcs11_pin_file"
        }
    }

    struct Profile: Decodable {
        var name: String
        var spiffeIDs: [String]
        var dnsNames: [String]?
        var defaultTTL: String?
        var maxTTL: String?
        var keyTypes: [String]?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case name
            case spiffeIDs = "spiffe_ids", dnsNames = "dns_names", defaultTTL = "default_ttl", maxTTL = "max_ttl", keyTypes = "key_types"
        }
    }

    struct AgentSection: Decodable {
        var ca: ConfigCAAddresses?
        var caBundle: String?
        var tokenFile: String?
        var out: String?
        var listen: String?
        var metrics: String?
        var certTTL: String?
        var renewFraction: Double?
        var keyType: String?
        var exec: String?
        var signal: String?
        var pidFile: String?
        var maxBackoff: String?
        var rpcTimeout: String?
        var crlRefresh: String?
        var logLevel: String?
        var logFormat: String?
        var handshakeTimeout: String?
        var idleTimeout: String?
        var maxConnections: Int?
        var hookTimeout: String?
        var caSpiffeID: String?
        var signalProcessName: String?
        var hookDebounce: String?
        var hookOn: String?
        var files: [String: String]?
        var pkcs12: String?
        var truststore: String?
        var pkcs12PasswordFile: String?
        var heartbeat: String?
        var workloadAPI: String?
        var workloadAPIMode: String?
        var workloadAPIOwner: String?
        var workloadAPIAllowUID: [UInt32]?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case workloadAPI = "workload_api", workloadAPIMode = "workload_api_mode", workloadAPIOwner = "workload_api_owner"
            case workloadAPIAllowUID = "workload_api_allow_uid"
            case handshakeTimeout = "handshake_timeout", idleTimeout = "idle_timeout", maxConnections = "max_connections"
            case hookTimeout = "hook_timeout", signalProcessName = "signal_process_name", caSpiffeID = "ca_spiffe_id"
            case hookDebounce = "hook_debounce", hookOn = "hook_on"
            case heartbeat
            case files, pkcs12, truststore, pkcs12PasswordFile = "pkcs12_password_file"
            case ca, out, listen, metrics, exec, signal
            case caBundle = "ca_bundle", tokenFile = "token_file", certTTL = "cert_ttl", renewFraction = "renew_fraction"
            case keyType = "key_type", pidFile = "pid_file", maxBackoff = "max_backoff", rpcTimeout = "rpc_timeout"
            case crlRefresh = "crl_refresh", logLevel = "log_level", logFormat = "log_format"
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case server, agent }

    /// Config files are a few KiB; a larger one is a mistake or an attack on memory.
    static let maxBytes = 1024 * 1024

    /// Reads and checks a config file; unknown keys are errors, so a typo cannot silently fall back to a default.
    /// Files over `maxBytes` and YAML anchors/aliases are refused before any document is built.
    static func load(_ path: String) throws -> ConfigFile {
        let text = try readBounded(path)
        if let found = YAMLAliasScan.firstAnchorOrAlias(in: text) {
            throw CLIError("config file \(path): line \(found.line): \(found.problem); anchors (&), aliases (*) and deep nesting "
                + "are not allowed, write values out")
        }
        do {
            try checkKeys(try Yams.load(yaml: text), path: path)
            return try YAMLDecoder().decode(ConfigFile.self, from: text)
        } catch let error as CLIError {
            throw error
        } catch let error as DecodingError {
            throw CLIError("config file \(path): \(describe(error))")
        } catch {
            // Yams reports the line and a caret drawing; one line is enough to find it.
            let summary = "\(error)".split(whereSeparator: \.isNewline).first.map(String.init) ?? "\(error)"
            throw CLIError("config file \(path) is not valid YAML: \(summary)")
        }
    }

    /// The file's text: a regular file of at most `maxBytes` (a FIFO or /dev/zero is refused at once).
    private static func readBounded(_ path: String) throws -> String {
        let data: Data
        do {
            data = try SmallFile.read(path, limit: maxBytes)
        } catch .unreadable(let reason) {
            throw CLIError("cannot read config file \(path) (\(reason))")
        } catch .tooLarge {
            throw CLIError("config file \(path) is larger than \(maxBytes / 1024) KiB")
        } catch {
            throw CLIError("config file \(path) \(error)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw CLIError("config file \(path) is not UTF-8 text") }
        return text
    }

    private static func checkKeys(_ document: Any?, path: String) throws {
        guard let document else { return }
        guard let top = document as? [String: Any] else { throw CLIError("config file \(path): expected a mapping with server: and agent:") }
        try unknown(in: top, allowed: CodingKeys.allCases.map(\.rawValue), at: "", path: path)
        if let server = top["server"] as? [String: Any] {
            try unknown(in: server, allowed: ServerSection.CodingKeys.allCases.map(\.rawValue), at: "server.", path: path)
            for (index, profile) in (server["profiles"] as? [Any] ?? []).enumerated() {
                guard let profile = profile as? [String: Any] else { throw CLIError("config file \(path): server.profiles[\(index)] is not a mapping") }
                try unknown(in: profile, allowed: Profile.CodingKeys.allCases.map(\.rawValue), at: "server.profiles[\(index)].", path: path)
            }
        }
        if let agent = top["agent"] as? [String: Any] {
            try unknown(in: agent, allowed: AgentSection.CodingKeys.allCases.map(\.rawValue), at: "agent.", path: path)
        }
    }

    private static func unknown(in mapping: [String: Any], allowed: [String], at prefix: String, path: String) throws {
        if let key = mapping.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw CLIError("config file \(path): unknown key \(prefix)\(key) (known: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context), .dataCorrupted(let context):
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return "\(path.isEmpty ? "" : path + ": ")\(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// Parses a duration from the config file, naming the key when it is malformed.
func configDuration(_ text: String?, key: String) throws -> DurationArgument? {
    guard let text else { return nil }
    guard let duration = DurationArgument(argument: text) else { throw CLIError("config key \(key): \(text.debugDescription) is not a duration like 30s, 15m, 24h") }
    return duration
}

/// Parses HOST:PORT from the config file, naming the key when it is malformed.
func configAddress(_ text: String?, key: String) throws -> HostPort? {
    guard let text else { return nil }
    guard let address = HostPort(text) else { throw CLIError("config key \(key): \(text.debugDescription) is not HOST:PORT") }
    return address
}

extension ConfigFile.Profile {
    func certificateProfile() throws -> CertificateProfile {
        guard !spiffeIDs.isEmpty else { throw CLIError("profile \(name): spiffe_ids must list at least one pattern") }
        if let unknown = keyTypes?.filter({ KeyType(rawValue: $0) == nil }).sorted().first {
            throw CLIError("profile \(name): unknown key type \(unknown) (known: \(KeyType.allCases.map(\.rawValue).sorted().joined(separator: ", ")))")
        }
        let types = keyTypes.map { Set($0.compactMap(KeyType.init(rawValue:))) }
        let defaultTTL = try configDuration(defaultTTL, key: "profiles.\(name).default_ttl")
        let maxTTL = try configDuration(maxTTL, key: "profiles.\(name).max_ttl")
        if let defaultTTL, let maxTTL, defaultTTL.seconds > maxTTL.seconds {
            throw CLIError("profile \(name): default_ttl is above max_ttl")
        }
        return CertificateProfile(name: name, spiffeIDPatterns: spiffeIDs, dnsPatterns: dnsNames ?? [],
                                  defaultTTL: defaultTTL.map { TimeInterval($0.seconds) }, maximumTTL: maxTTL.map { TimeInterval($0.seconds) },
                                  keyTypes: types)
    }
}
