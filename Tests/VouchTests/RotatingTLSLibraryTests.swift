import Foundation
import GRPCCore
import Logging
import VouchAPI
import VouchCrypto
import VouchTLS
import XCTest

/// The reusable library: a Swift gRPC server outside the agent follows the
/// agent's files through the inotify file watch, without restarting.
final class RotatingTLSLibraryTests: XCTestCase {
    func testAServerOnTheAgentsFilesServesEachRotatedCertificate() async throws {
        let ca = try CAFixture()
        // The shortest lifetime the CA issues; with the CA's backdate of a tenth of it, the first
        // rotation comes about 1.2 s after enrollment.
        let (agent, out) = try ca.startAgent(ttl: "5s", extra: ["--renew-fraction", "0.3"])
        defer { agent.stop() }

        // Another service's gRPC server, built on the library over the agent's directory.
        let tls = try RotatingServerTLS(files: IdentityFiles(directory: out))
        let reloads = ReloadLog()
        let watcher = FileWatcher(directory: out, names: IdentityFiles.names) {
            if let leaf = try? tls.reload() { reloads.append(leaf.serialHex) }
        }
        let watchThread = Thread { try? watcher.run() }
        watchThread.start()
        defer { watcher.stop() }
        let server = GRPCServer(transport: try tls.makeTransport(host: "127.0.0.1", port: 0),
                                services: [HealthService(services: [])], interceptors: [SPIFFEIdentityInterceptor()])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.serve() }
            let port = try await server.listeningAddress?.ipv4?.port ?? 0
            let first = try served(port: port, ca: ca)
            let deadline = Date().addingTimeInterval(10)
            var current = first
            while current == first, Date() < deadline {
                try await Task.sleep(for: .milliseconds(100))
                current = try served(port: port, ca: ca)
            }
            XCTAssertNotEqual(current, first, "the watched files were reloaded")
            let onDisk = try X509Certificate(pem: String(contentsOfFile: out + "/svid.pem", encoding: .utf8)).serialHex
            XCTAssertTrue(reloads.serials.contains(current), "reloads \(reloads.serials), served \(current), on disk \(onDisk)")

            // Health over mTLS through the same server.
            let health = try await VouchClient.with(server: HostPort(host: "127.0.0.1", port: port),
                                                    credentials: ca.admin.expecting("spiffe://example.org/svc/web")) {
                try await Grpc_Health_V1_Health.Client(wrapping: $0).check(Grpc_Health_V1_HealthCheckRequest())
            }
            XCTAssertEqual(health.status, .serving)
            server.beginGracefulShutdown()
        }
    }

    private func served(port: Int, ca: CAFixture) throws -> String {
        let result = try openssl(["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", ca.caDir + "/bundle.pem",
                                  "-cert", ca.caDir + "/admin.pem", "-key", ca.caDir + "/admin_key.pem"], stdin: Data())
        return try X509Certificate(pem: result.stdout).serialHex
    }
}

final class ReloadLog: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String] = []
    func append(_ serial: String) { lock.withLock { values.append(serial) } }
    var serials: [String] { lock.withLock { values } }
}
