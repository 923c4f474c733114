import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI
import VouchAuthority
import VouchCrypto

/// Load generator for a running Vouch CA server: a separate process, so the
/// server's CPU and memory figures are its own.
@main
struct VouchBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vouch-bench",
        abstract: "Drive Enroll or Renew against a Vouch CA and print certs/s, p50/p99 latency, server CPU and RSS.")

    @Option(help: "CA server address, HOST:PORT.")
    var server: HostPort

    @Option(help: "CA directory made by `vouch ca init` (admin credentials and bundle.pem).")
    var dir: String

    @Option(help: "enroll or renew.")
    var mode: String = "renew"

    @Option(help: "Comma-separated concurrency levels; each worker has its own connection.")
    var concurrency: String = "1,8,32,128"

    @Option(help: "Seconds of load before measuring.")
    var warmup: Int = 2

    @Option(help: "Seconds measured per concurrency level.")
    var duration: Int = 10

    @Option(help: "PID of the server, for its CPU and RSS.")
    var serverPID: Int32?

    @Option(help: "SPIFFE ID the benchmark identities get.")
    var spiffeID: String?

    @Flag(help: "Print one JSON object per level instead of a table row.")
    var json = false

    @Option(help: "Also append each level's result as a JSON line to this file.")
    var record: String?

    struct Row: Encodable {
        let mode: String
        let concurrency: Int
        let load: LatencySummary
        let serverCPUPercent: Double?
        let serverRSSMegabytes: Double?
        let clientCPUPercent: Double?
        let firstError: String?
    }

    func run() async throws {
        guard let mode = LoadMode(rawValue: mode) else { throw ValidationError("--mode must be enroll or renew") }
        let levels = concurrency.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !levels.isEmpty, levels.allSatisfy({ $0 > 0 }) else { throw ValidationError("--concurrency needs positive numbers") }
        let files = CAFiles(directory: dir)
        struct TrustDomain: Decodable { let trustDomain: String }
        let settings = try JSONDecoder().decode(TrustDomain.self, from: Data(contentsOf: URL(fileURLWithPath: files.settings)))
        let identity = spiffeID ?? "spiffe://\(settings.trustDomain)/bench/load"

        // Distinct keys, made before the clock starts: the client's own key generation is not measured.
        let csrs = try (0..<256).map { _ in try PreparedKey() }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-bench-\(getpid())")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }

        let adminCredentials = VouchClient.Credentials(bundlePEMPath: files.bundle, certificatePEMPath: files.adminCertificate,
                                                       keyPEMPath: files.adminKey)
        if !json {
            print("mode    conc  certs/s   p50 ms   p99 ms   max ms  failed  server CPU  server RSS  client CPU")
        }
        try await VouchClient.with(server: server, credentials: adminCredentials) { client in
            let tokens = TokenSupply(admin: Vouch_V1_Admin.Client(wrapping: client), spiffeID: identity)
            for level in levels {
                let row = try await measure(mode: mode, concurrency: level, tokens: tokens, csrs: csrs, scratch: scratch)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                let line = String(decoding: try encoder.encode(row), as: UTF8.self)
                print(json ? line : Self.format(row))
                if let record {
                    try Self.append(line + "\n", to: record)
                }
            }
        }
    }

    private func measure(mode: LoadMode, concurrency: Int, tokens: TokenSupply, csrs: [PreparedKey], scratch: URL) async throws -> Row {
        let samples = SampleBox()
        let pid = serverPID
        let load = IssuanceLoad(server: server, caDirectory: dir, mode: mode, concurrency: concurrency,
                                warmup: .seconds(warmup), duration: .seconds(duration), csrs: csrs, scratch: scratch)
        let outcome = try await load.run(tokens: tokens) {
            samples.record(server: pid.flatMap { ProcessSample(pid: $0) }, client: ProcessSample.ofSelf())
        }
        let seconds = Double(duration)
        let (server, client) = samples.deltas()
        return Row(mode: mode.rawValue, concurrency: concurrency,
                   load: LatencySummary(latencies: outcome.latencies, failed: outcome.failures, seconds: seconds),
                   serverCPUPercent: server.map { $0.cpu / seconds * 100 },
                   serverRSSMegabytes: server.map { Double($0.rss) / 1_048_576 },
                   clientCPUPercent: client.map { $0.cpu / seconds * 100 },
                   firstError: outcome.firstError)
    }

    static func append(_ text: String, to path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
    }

    static func format(_ row: Row) -> String {
        func f(_ value: Double?, _ digits: Int = 1) -> String { value.map { String(format: "%.\(digits)f", $0) } ?? "-" }
        let columns: [(String, Int)] = [
            (row.mode, -6), ("\(row.concurrency)", 5), (f(row.load.perSecond), 9), (f(row.load.p50Milliseconds, 2), 8),
            (f(row.load.p99Milliseconds, 2), 8), (f(row.load.maxMilliseconds, 2), 8), ("\(row.load.failed)", 7),
            (row.serverCPUPercent.map { f($0) + "%" } ?? "-", 11), (row.serverRSSMegabytes.map { f($0) + " MB" } ?? "-", 11),
            (row.clientCPUPercent.map { f($0) + "%" } ?? "-", 11),
        ]
        var line = columns.map { text, width in
            let pad = String(repeating: " ", count: max(0, abs(width) - text.count))
            return width < 0 ? text + pad : pad + text
        }.joined(separator: " ")
        if let error = row.firstError { line += "  first error: \(error)" }
        return line
    }
}

/// The CPU samples taken at the start and end of the measured window.
final class SampleBox: @unchecked Sendable {
    private let lock = NSLock()
    private var server: [ProcessSample] = []
    private var client: [ProcessSample] = []

    func record(server: ProcessSample?, client: ProcessSample?) {
        lock.withLock {
            if let server { self.server.append(server) }
            if let client { self.client.append(client) }
        }
    }

    func deltas() -> (server: (cpu: Double, rss: Int)?, client: (cpu: Double, rss: Int)?) {
        lock.withLock {
            func delta(_ samples: [ProcessSample]) -> (cpu: Double, rss: Int)? {
                guard samples.count == 2 else { return nil }
                return (samples[1].cpuSeconds - samples[0].cpuSeconds, samples[1].residentBytes)
            }
            return (delta(server), delta(client))
        }
    }
}

extension HostPort: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}
