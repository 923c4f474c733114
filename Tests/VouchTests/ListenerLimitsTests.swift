import Foundation
import VouchAPI
import XCTest

/// Every listener closes connections that never finish (TLS handshake, HTTP request) or sit
/// idle, caps how many are open, and keeps serving everyone else meanwhile.
final class ListenerLimitsTests: XCTestCase {
    /// A TLS record header announcing a 512-byte ClientHello, then the first bytes of it.
    static let partialClientHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]

    /// CA directories of the servers started here; each owns its directory and first server.
    private var bases: [CAFixture] = []

    func startServer(_ flags: [String], openFileLimit: Int? = nil) throws -> (CAFixture, httpPort: Int) {
        let base = try CAFixture()
        bases.append(base)
        base.server.stop()
        let server = try ServerProcess(directory: base.caDir, extraArguments: ["--http", "127.0.0.1:0"] + flags,
                                       openFileLimit: openFileLimit)
        let ca = try CAFixture(reusing: base, server: server)
        XCTAssertTrue(eventually { server.log.contains("vouch server http on ") }, server.log)
        return (ca, Int(server.httpAddress?.split(separator: ":").last ?? "") ?? 0)
    }

    override func tearDown() {
        bases.removeAll()
    }

    /// The body and status of GET /healthz, as "ok 200".
    func healthz(_ port: Int) throws -> String {
        try execute("/usr/bin/curl", ["-s", "-m", "5", "-w", " %{http_code}", "http://127.0.0.1:\(port)/healthz"]).stdout
            .split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    /// How long after it was opened each closed connection was seen closed, shortest and longest.
    func closedAfter(_ connections: [RawConnection]) -> (first: TimeInterval, last: TimeInterval) {
        let spans = connections.compactMap { connection in connection.closedAt.map { $0.timeIntervalSince(connection.openedAt) } }
        return (spans.min() ?? -1, spans.max() ?? -1)
    }

    func testStalledConnectionsAreClosedAfterTheTimeoutsWhileTheServerKeepsServing() async throws {
        let (ca, httpPort) = try startServer(["--handshake-timeout", "1s", "--idle-timeout", "2s"])
        let pid = ca.server.process.processIdentifier
        let descriptorsBefore = openDescriptors(pid)

        // A TLS client that completes the handshake and then sends nothing, beside the stalled ones below.
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        client.arguments = ["s_client", "-connect", ca.server.address, "-tls1_3", "-alpn", "h2", "-CAfile", ca.caDir + "/bundle.pem"]
        let input = Pipe(), output = Pipe()
        client.standardInput = input
        client.standardOutput = output
        client.standardError = output
        let connected = Date()
        try client.run()
        defer { if client.isRunning { client.terminate() } }

        // 150 TCP connections to gRPC that never send, 50 that begin a TLS handshake and stall,
        // 100 TCP connections to HTTP that never send; in batches the accept queue can hold.
        var stalled: [RawConnection] = []
        for (port, firstBytes) in [(ca.server.port, []), (ca.server.port, []), (ca.server.port, []),
                                   (ca.server.port, Self.partialClientHello), (httpPort, []), (httpPort, [])] {
            for _ in 0..<50 {
                let connection = try RawConnection(port: port)
                if !firstBytes.isEmpty { connection.send(firstBytes) }
                stalled.append(connection)
            }
            XCTAssertTrue(eventually { openDescriptors(pid) >= descriptorsBefore + stalled.count },
                          "the server holds \(stalled.count): \(openDescriptors(pid)) descriptors, \(descriptorsBefore) before")
        }

        // Meanwhile /healthz and gRPC answer.
        XCTAssertEqual(try healthz(httpPort), "ok 200")
        let bundle = try await ca.ca(ca.anonymous) { try await $0.getTrustBundle(Vouch_V1_TrustBundleRequest()) }
        XCTAssertFalse(bundle.roots.isEmpty)

        XCTAssertEqual(RawConnection.waitUntilClosed(stalled, timeout: 4), 300, "every stalled connection is closed")
        let (first, last) = closedAfter(stalled)
        XCTAssertGreaterThanOrEqual(first, 0.95, "none before --handshake-timeout (1 s) after it was opened")
        XCTAssertLessThan(last, 2.5, "each closed about 1 s (--handshake-timeout) after it was opened")

        // The idle TLS client is closed after --idle-timeout, not at the handshake timeout.
        XCTAssertTrue(eventually(timeout: 6) { !client.isRunning }, "the idle TLS connection was not closed")
        let idleFor = Date().timeIntervalSince(connected)
        XCTAssertGreaterThan(idleFor, 1.9, "not before --idle-timeout")
        XCTAssertLessThan(idleFor, 4)
        XCTAssertTrue(eventually { openDescriptors(pid) <= descriptorsBefore + 2 },
                      "descriptors are given back: \(openDescriptors(pid)) now, \(descriptorsBefore) before")
        XCTAssertEqual(try healthz(httpPort), "ok 200")
    }

    func testConnectionCapRefusesTheExcessLogsItOnceAndRecovers() async throws {
        // From the config file this time.
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("limits-\(UUID().uuidString).yaml").path
        try "server:\n  max_connections: 20\n  handshake_timeout: 1s\n".write(toFile: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: config) }
        let (ca, httpPort) = try startServer(["--config", config])
        var connections: [RawConnection] = []
        for _ in 0..<30 { connections.append(try RawConnection(port: ca.server.port)) }
        XCTAssertEqual(RawConnection.waitUntilClosed(connections, count: 10, timeout: 0.9), 10, "the 10 over --max-connections are closed")
        XCTAssertLessThan(closedAfter(connections).last, 0.9, "at once, not at the handshake timeout (1 s)")
        XCTAssertTrue(eventually { ca.server.log.contains("connection limit reached") }, ca.server.log)
        let reports = ca.server.log.components(separatedBy: "connection limit reached").count - 1
        XCTAssertEqual(reports, 1, "one log line for the burst: \(ca.server.log)")
        XCTAssertTrue(ca.server.log.contains("max_connections=20"), ca.server.log)
        XCTAssertEqual(try healthz(httpPort), "ok 200", "the HTTP listener has its own cap")

        // The held 20 time out; then gRPC accepts again.
        let early = Set(connections.filter { $0.closedAt != nil }.map(ObjectIdentifier.init))
        XCTAssertEqual(RawConnection.waitUntilClosed(connections, timeout: 3), 30)
        let held = connections.filter { !early.contains(ObjectIdentifier($0)) }
        XCTAssertEqual(held.count, 20)
        XCTAssertGreaterThanOrEqual(closedAfter(held).first, 0.95, "the held 20 are closed by the handshake timeout")
        let bundle = try await ca.ca(ca.anonymous) { try await $0.getTrustBundle(Vouch_V1_TrustBundleRequest()) }
        XCTAssertFalse(bundle.roots.isEmpty)
    }

    /// 1,100 idle HTTP connections to a server with 1,024 file descriptors: the HTTP listener's
    /// default cap (a quarter of them) refuses the excess, so gRPC keeps its descriptors and
    /// answers, and /healthz answers again once the handshake timeout frees the held ones.
    func testAFloodOfIdleHTTPConnectionsCannotTakeTheDescriptorsGRPCNeeds() async throws {
        let (ca, httpPort) = try startServer(["--handshake-timeout", "1s"], openFileLimit: 1024)

        var flood: [RawConnection] = []
        for _ in 0..<22 {
            for _ in 0..<50 { flood.append(try RawConnection(port: httpPort)) }
            try await Task.sleep(for: .milliseconds(20))   // lets the server drain its accept queue
        }
        XCTAssertTrue(eventually { ca.server.log.contains("connection limit reached") }, ca.server.log)
        XCTAssertTrue(ca.server.log.contains("listener=http") && ca.server.log.contains("max_connections=256"), ca.server.log)
        let bundle = try await ca.ca(ca.anonymous) { try await $0.getTrustBundle(Vouch_V1_TrustBundleRequest()) }
        XCTAssertFalse(bundle.roots.isEmpty, "gRPC answers during the flood")
        XCTAssertEqual(RawConnection.stillOpen(flood), 256, "gRPC answered while the HTTP listener held its full 256")
        XCTAssertEqual(RawConnection.waitUntilClosed(flood, timeout: 4), 1100)
        XCTAssertEqual(try healthz(httpPort), "ok 200")
    }

    func testSlowHTTPRequestsAreClosedWithinTheReadTimeouts() throws {
        let (ca, httpPort) = try startServer(["--handshake-timeout", "1s", "--idle-timeout", "60s"])
        // Headers trickled a byte at a time still have to be complete within the timeout (beside the two below).
        let trickle = try RawConnection(port: httpPort)
        let trickled = DispatchSemaphore(value: 0)
        Thread {
            for byte in "GET /healthz HTTP/1.1\r\nHost: ca\r\nX-Slow: 1\r\n".utf8 where !trickle.isClosed {
                trickle.send([byte])
                Thread.sleep(forTimeInterval: 0.1)
            }
            trickled.signal()
        }.start()

        let halfRequestLine = try RawConnection(port: httpPort)
        halfRequestLine.send("GET /heal")
        let noBody = try RawConnection(port: httpPort)
        noBody.send("POST /ocsp HTTP/1.1\r\nHost: ca\r\nContent-Type: application/ocsp-request\r\nContent-Length: 100\r\n\r\n")
        XCTAssertEqual(RawConnection.waitUntilClosed([halfRequestLine, noBody], timeout: 2), 2)
        let (first, last) = closedAfter([halfRequestLine, noBody])
        XCTAssertGreaterThanOrEqual(first, 0.95, "not before the timeout")
        XCTAssertLessThan(last, 2, "closed about 1 s after they stalled")

        trickled.wait()
        XCTAssertTrue(trickle.isClosed)
        XCTAssertLessThan(closedAfter([trickle]).last, 2)
        XCTAssertEqual(try healthz(httpPort), "ok 200")
        _ = ca
    }

    func testAgentListenersCloseStalledConnectionsAndLiveStreamsSurviveTheIdleTimeout() throws {
        let (ca, _) = try startServer(["--idle-timeout", "1s"])
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("limits-\(UUID().uuidString).yaml").path
        try "agent:\n  handshake_timeout: 1s\n  idle_timeout: 2s\n  hook_timeout: 10s\n".write(toFile: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: config) }
        let (agent, _) = try ca.startAgent(ttl: "10m", extra: ["--metrics", "127.0.0.1:0", "--config", config])
        let agentStarted = Date()
        defer { agent.stop() }
        XCTAssertTrue(eventually { agent.log.contains("vouch agent metrics on ") }, agent.log)
        let metricsPort = Int(announcedAddress(in: agent.log, after: "vouch agent metrics on ")?.split(separator: ":").last ?? "") ?? 0

        let silentGRPC = try RawConnection(port: agent.port)
        let stalledTLS = try RawConnection(port: agent.port)
        stalledTLS.send(Self.partialClientHello)
        let halfRequest = try RawConnection(port: metricsPort)
        halfRequest.send("GET /metr")
        XCTAssertEqual(RawConnection.waitUntilClosed([silentGRPC, stalledTLS, halfRequest], timeout: 3), 3)
        let (first, last) = closedAfter([silentGRPC, stalledTLS, halfRequest])
        XCTAssertGreaterThanOrEqual(first, 0.95, "not before the agent's handshake_timeout")
        XCTAssertLessThan(last, 2, "closed about 1 s after they stalled")

        // The agent's revocation stream to the CA outlives two of the CA's 1 s idle timeouts (and four
        // of its keepalive pings): the pings show the CA a live peer, and a connection with an RPC in
        // flight is not idle.
        Thread.sleep(until: agentStarted.addingTimeInterval(2.5))
        XCTAssertFalse(agent.log.contains("revocation stream down"), agent.log)
    }
}
