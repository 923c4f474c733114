import ArgumentParser
import Foundation
import GRPCCore
import Logging
import VouchAPI
import VouchAuthority
import VouchCrypto
import VouchSQLiteStore
import VouchTLS

/// A failure the CLI reports as one line on stderr with exit code 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs a command body; any error becomes `vouch: <reason>` and exit code 1.
func runReportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("vouch: \(describe(error))\n".utf8))
        throw ExitCode.failure
    }
}

/// Parses durations such as `90s`, `15m`, `24h`, `7d`, `1h30m`.
struct DurationArgument: ExpressibleByArgument, Sendable {
    let seconds: Int64

    init?(argument: String) {
        guard let seconds = Self.parse(argument) else { return nil }
        self.seconds = seconds
    }

    static func parse(_ text: String) -> Int64? {
        var total: Int64 = 0
        var number = ""
        guard !text.isEmpty else { return nil }
        for character in text {
            if character.isASCII, character.isNumber {
                number.append(character)
                continue
            }
            guard let value = Int64(number) else { return nil }
            let unit: Int64
            switch character {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86400
            default: return nil
            }
            let (product, overflow) = value.multipliedReportingOverflow(by: unit)
            guard !overflow else { return nil }
            let (sum, sumOverflow) = total.addingReportingOverflow(product)
            guard !sumOverflow else { return nil }
            total = sum
            number = ""
        }
        if !number.isEmpty {
            guard let value = Int64(number) else { return nil }  // bare number = seconds
            let (sum, overflow) = total.addingReportingOverflow(value)
            guard !overflow else { return nil }
            total = sum
        }
        return total
    }
}

extension HostPort: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

/// Options every admin command shares: where the CA is and which admin credential to use.
struct AdminConnectionOptions: ParsableArguments {
    @Option(help: "CA directory made by `vouch ca init` (admin.pem, admin_key.pem, bundle.pem).")
    var dir: String = "./vouch-ca"

    @Option(help: "CA server address, HOST:PORT.")
    var server: HostPort = HostPort(host: "127.0.0.1", port: 8443)

    @Option(help: "Admin client certificate (default: DIR/admin.pem).")
    var cert: String?

    @Option(help: "Admin client key (default: DIR/admin_key.pem).")
    var key: String?

    @Option(help: "Trust bundle (default: DIR/bundle.pem).")
    var bundle: String?

    @Option(help: "SPIFFE ID the CA server must present (default: spiffe://<trust domain of DIR>/vouch/server).")
    var serverSpiffeId: String?

    @Option(help: "Deadline for the call.")
    var timeout: DurationArgument = DurationArgument(argument: "30s")!

    var credentials: VouchClient.Credentials {
        let files = CAFiles(directory: dir)
        return VouchClient.Credentials(bundlePEMPath: bundle ?? files.bundle,
                                       certificatePEMPath: cert ?? files.adminCertificate,
                                       keyPEMPath: key ?? files.adminKey,
                                       serverIdentity: serverIdentity(files: files))
    }

    /// The configured ID, else the Vouch server ID of the directory's trust domain. Without a
    /// readable ca.json (a bundle copied off the CA host), any trust domain the bundle vouches for.
    private func serverIdentity(files: CAFiles) -> ServerIdentity {
        if let serverSpiffeId { return .spiffeID(serverSpiffeId) }
        return .vouchServer(trustDomain: (try? CASettings.load(from: files))?.trustDomain)
    }

    var callOptions: CallOptions { VouchClient.options(timeout: .seconds(timeout.seconds)) }

    func checkFiles() throws {
        for path in [credentials.bundlePEMPath, credentials.certificatePEMPath!, credentials.keyPEMPath!]
        where !FileManager.default.isReadableFile(atPath: path) {
            throw CLIError("cannot read \(path): pass --dir with a CA directory, or --cert/--key/--bundle")
        }
    }
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func iso8601(_ seconds: Int64) -> String {
    seconds == 0 ? "" : Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(.iso8601)
}

/// Prints rows as aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    for row in all {
        print(row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }.joined(separator: "  "))
    }
}

/// Reads a CA passphrase from a file, or VOUCH_CA_PASSPHRASE.
func readPassphrase(file: String?) throws -> String? {
    if let file {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw CLIError("cannot read passphrase file \(file)")
        }
        let passphrase = text.trimmingCharacters(in: .newlines)
        guard !passphrase.isEmpty else { throw CLIError("passphrase file \(file) is empty") }
        return passphrase
    }
    if let env = ProcessInfo.processInfo.environment["VOUCH_CA_PASSPHRASE"], !env.isEmpty { return env }
    return nil
}

enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// Sets up swift-log once per process: one line per event on stderr.
func bootstrapLogging(level: Logger.Level, format: LogFormat) {
    LoggingSystem.bootstrap { label in
        var handler: any LogHandler = format == .json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// `vouch ca init`'s work, shared with quickstart: writes the CA files, then records the
/// certificates it issued (server, admin) in the new database.
func initializeCA(_ initializer: CAInitializer) async throws -> SQLiteAuthorityStore {
    let issued = try initializer.run()
    let store = try SQLiteAuthorityStore(path: initializer.files.database)
    for record in issued {
        try await store.insertCertificate(record, audit: AuditEntry(
            time: record.issuedAt, actor: "local", action: "issue", subject: record.serial, peer: "local",
            detail: "\(record.spiffeID) (ca init)"))
    }
    return store
}

/// Logging flags of the long-running commands.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (default info).")
    var logLevel: Logger.Level?

    @Option(help: "Log format: text or json, one object per line (default text).")
    var logFormat: LogFormat?

    /// Flags first, then the config file's values, then the defaults.
    func bootstrap(configLevel: String?, configFormat: String?) throws {
        let level = try logLevel ?? configLevel.map { text in
            guard let level = Logger.Level(rawValue: text) else { throw CLIError("config key log_level: unknown level \(text)") }
            return level
        } ?? .info
        let format = try logFormat ?? configFormat.map { text in
            guard let format = LogFormat(rawValue: text) else { throw CLIError("config key log_format: use text or json, not \(text)") }
            return format
        } ?? .text
        bootstrapLogging(level: level, format: format)
    }
}
