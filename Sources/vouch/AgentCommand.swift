import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VouchAgent
import VouchAPI
import VouchCrypto
import VouchHTTP

struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Enroll, keep a certificate fresh on disk, and serve a local mTLS status API that hot-reloads it.")

    @Option(help: "CA server address, HOST:PORT.")
    var ca: HostPort

    @Option(help: "Trust bundle to verify the CA server (bundle.pem from `vouch ca init`).")
    var caBundle: String

    @Option(help: "File holding a one-time enrollment token (needed for the first start or after expiry).")
    var tokenFile: String?

    @Option(help: "Directory for svid.pem, svid_key.pem, chain.pem, bundle.pem.")
    var out: String

    @Option(help: "Serve the local mTLS status and health API on HOST:PORT.")
    var listen: HostPort?

    @Option(help: "Serve Prometheus metrics over HTTP at http://HOST:PORT/metrics.")
    var metrics: HostPort?

    @Option(help: "Certificate lifetime to request, e.g. 24h or 2m.")
    var certTtl: DurationArgument = DurationArgument(argument: "24h")!

    @Option(help: "Renew after this fraction of the lifetime (jittered).")
    var renewFraction: Double = 0.66

    @Option(help: "Key type: p256, p384, ed25519, rsa2048, rsa3072, rsa4096.")
    var keyType: String = "p256"

    @Option(help: "Shell command run after each rotation (VOUCH_SERIAL and VOUCH_DIR are set).")
    var exec: String?

    @Option(help: "Signal sent after each rotation to the process in --pid-file, e.g. HUP.")
    var signal: String?

    @Option(help: "File holding the pid to signal.")
    var pidFile: String?

    @Option(help: "Longest wait between failed renewal attempts.")
    var maxBackoff: DurationArgument = DurationArgument(argument: "30s")!

    @Option(help: "Deadline for each call to the CA.")
    var rpcTimeout: DurationArgument = DurationArgument(argument: "10s")!

    @Option(help: "How often to fetch the CRL as a fallback to the revocation stream.")
    var crlRefresh: DurationArgument = DurationArgument(argument: "60s")!

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard renewFraction > 0.1, renewFraction < 0.95 else { throw ValidationError("--renew-fraction must be between 0.1 and 0.95") }
        guard KeyAlgorithm(rawValue: keyType) != nil else { throw ValidationError("unknown --key-type \(keyType)") }
        guard (signal == nil) == (pidFile == nil) else { throw ValidationError("--signal and --pid-file go together") }
        if let signal, Self.signalNumber(signal) == nil { throw ValidationError("unknown signal \(signal)") }
    }

    static func signalNumber(_ name: String) -> Int32? {
        let table: [String: Int32] = ["HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "USR1": SIGUSR1, "USR2": SIGUSR2,
                                      "TERM": SIGTERM, "WINCH": SIGWINCH]
        let upper = name.uppercased()
        return Int32(name) ?? table[upper.hasPrefix("SIG") ? String(upper.dropFirst(3)) : upper]
    }

    func run() async throws {
        try await runReportingErrors {
            umask(0o077)
            logging.bootstrap()
            let logger = Logger(label: "vouch.agent")
            let registry = metrics.map { _ in PrometheusBootstrap.install() }
            let configuration = AgentConfiguration(
                caAddress: ca, caBundlePath: caBundle, tokenFilePath: tokenFile, outDirectory: out, listen: listen,
                certificateTTL: certTtl.seconds, renewFraction: renewFraction, keyAlgorithm: KeyAlgorithm(rawValue: keyType)!,
                execCommand: exec, signal: signal.flatMap(Self.signalNumber), pidFile: pidFile,
                maximumBackoff: Double(maxBackoff.seconds), rpcTimeout: Double(max(1, rpcTimeout.seconds)), crlRefreshInterval: Double(max(1, crlRefresh.seconds)))
            let agent = Agent(configuration: configuration, logger: logger, onListening: { address in
                print("vouch agent listening on \(address)")
                fflush(nil)
            })
            var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: agent)]
            if let metrics, let registry {
                services.append(.init(service: HTTPEndpoint(host: metrics.host, port: metrics.port, onListening: { port in
                    print("vouch agent metrics on \(HostPort(host: metrics.host, port: port))")
                    fflush(nil)
                }) { request in
                    guard request.method == "GET", request.path == "/metrics" else { return .text(404, "see /metrics") }
                    agent.refreshGauges()
                    return PrometheusBootstrap.scrape(registry)
                }))
            }
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        }
    }
}
