import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VouchAPI
import VouchDashboard

/// `vouch ui`: a read-only dashboard for the operator's browser, on loopback, reading the CA
/// through the Admin API with the admin certificate of the CA directory.
struct UICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ui",
        abstract: "Serve a read-only dashboard (inventory, expiry, revocations, fleet, audit) on a loopback address.",
        discussion: """
            Prints once a URL whose path holds a secret key (http://127.0.0.1:8081/<key>/); every page lives \
            below it, so only who has the URL reads the CA through the dashboard, not other users of this machine. \
            Keep the URL like a password; no cookie is set. Each page load connects to the CA anew with the admin \
            certificate, so a renewed admin certificate needs no restart.
            """)

    @OptionGroup var connection: AdminConnectionOptions

    @Option(help: "Loopback address to serve the dashboard on, HOST:PORT (127.0.0.1, [::1] or localhost; port 0 picks a free one).")
    var listen: HostPort = HostPort(host: "127.0.0.1", port: 8081)

    @OptionGroup var logging: LoggingOptions

    func run() async throws {
        try await runReportingErrors {
            try connection.checkFiles()
            try logging.bootstrap(configLevel: nil, configFormat: nil)
            let logger = Logger(label: "vouch.ui")
            let connector = GRPCAdminConnector(server: connection.server, credentials: connection.credentials,
                                               timeout: .seconds(connection.timeout.seconds))
            let server = try DashboardServer(listen: listen, connector: connector) { url in
                // The key goes to the operator's terminal only; it is never logged.
                print("vouch ui on \(url)")
                fflush(nil)
            }
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(
                services: [.init(service: server)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        }
    }
}
