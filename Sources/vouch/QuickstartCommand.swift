import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VouchAgent
import VouchAPI
import VouchAuthority
import VouchFiles
import VouchSQLiteStore

struct QuickstartCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quickstart",
        abstract: "Run a local CA, server and agent rotating short-lived certificates; Ctrl-C stops it.")

    @Option(help: "Working directory (default: a new temporary one). A CA already in DIR/ca is reused.")
    var dir: String?

    @Option(help: "Lifetime of the agent's certificates.")
    var certTtl: DurationArgument = DurationArgument(argument: "2m")!

    @Option(help: "CA server address (port 0 picks a free one).")
    var listen: HostPort = HostPort(host: "127.0.0.1", port: 0)

    @Option(help: "Log level of the server and agent logs (stderr).")
    var logLevel: Logger.Level = .warning

    func run() async throws {
        try await runReportingErrors {
            umask(0o077)
            bootstrapLogging(level: logLevel, format: .text)
            let root = dir ?? FileManager.default.temporaryDirectory.appendingPathComponent("vouch-quickstart-\(UUID().uuidString.prefix(8))").path
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            let files = CAFiles(directory: root + "/ca")
            let trustDomain = "example.org"
            let store: SQLiteAuthorityStore
            if FileManager.default.fileExists(atPath: files.settings) {
                say("Using the CA in \(files.directory.path)")
                store = try SQLiteAuthorityStore(path: files.database)
            } else {
                store = try await initializeCA(CAInitializer(files: files, trustDomain: trustDomain, passphrase: nil))
                say("Created a CA for trust domain \(trustDomain) in \(files.directory.path)")
            }
            let material = try CAMaterial.load(from: files, passphrase: nil)
            let authority = CertificateAuthority(store: store, material: material,
                                                 policy: IssuancePolicy(trustDomain: material.settings.trustDomain))
            try await authority.start()

            let (addresses, announce) = AsyncStream.makeStream(of: HostPort.self)
            let server = CAServer(authority: authority, files: files, address: listen, logger: Logger(label: "vouch.server")) {
                announce.yield($0)
                announce.finish()
            }
            let launcher = QuickstartAgentLauncher(root: root, files: files, authority: authority, addresses: addresses,
                                                   certificateTTL: certTtl.seconds)
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(
                services: [.init(service: server), .init(service: launcher, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "vouch.quickstart")))
            try await group.run()
            say("Stopped. Files are in \(root)")
        }
    }
}

func say(_ line: String) {
    let time = Date().formatted(.iso8601)
    print("[\(time)] \(line)")
    fflush(nil)
}

/// Waits for the CA server, creates a token and runs an agent with it.
struct QuickstartAgentLauncher: Service {
    let root: String
    let files: CAFiles
    let authority: CertificateAuthority
    let addresses: AsyncStream<HostPort>
    let certificateTTL: Int64

    func run() async throws {
        var iterator = addresses.makeAsyncIterator()
        guard let address = await iterator.next() else { return }
        say("CA server listening on \(address) (TLS 1.3, mTLS)")
        let spiffeID = "spiffe://\(authority.policy.trustDomain)/demo/web"
        let agentDir = root + "/agent"
        try FileManager.default.createDirectory(atPath: agentDir, withIntermediateDirectories: true)
        let tokenPath = agentDir + "/token"
        let token = try await authority.createToken(spiffeID: spiffeID, dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"],
                                                    ttlSeconds: 0, uses: 1, caller: .local)
        try AtomicFile.write(token.token.text + "\n", to: tokenPath, mode: 0o600)
        say("Created a one-time token \(token.record.id) for \(spiffeID)")

        let configuration = AgentConfiguration(
            caAddress: address, caBundlePath: files.bundle, tokenFilePath: tokenPath, outDirectory: agentDir + "/files",
            listen: HostPort(host: "127.0.0.1", port: 0), certificateTTL: .seconds(certificateTTL))
        let agent = Agent(configuration: configuration, logger: Logger(label: "vouch.agent"), onIdentity: { snapshot in
            let expiry = snapshot.notAfter.map { $0.formatted(.iso8601) } ?? "?"
            let seconds = Int(snapshot.notAfter?.timeIntervalSinceNow ?? 0)
            if snapshot.rotations == 0 {
                say("Agent enrolled \(snapshot.spiffeID): serial \(snapshot.serial), expires \(expiry) (in \(seconds)s)")
            } else {
                say("Agent rotated (#\(snapshot.rotations)): serial \(snapshot.serial), new key, expires \(expiry) (in \(seconds)s)")
            }
        }, onListening: { address in
            say("Agent serving mTLS status on \(address) with its current certificate; files in \(agentDir)/files")
            say("Rotation happens at about 2/3 of each certificate's lifetime. Press Ctrl-C to stop.")
        })
        try await agent.run()
    }
}
