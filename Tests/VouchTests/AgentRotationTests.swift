import Foundation
import GRPCCore
import Synchronization
import VouchAPI
import VouchCrypto
import XCTest

/// `vouch agent` as a real process against a real `vouch server`.
final class AgentRotationTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    func startAgent(_ ca: CAFixture, ttl: String, extra: [String] = []) throws -> (AgentProcess, String) {
        try ca.startAgent(spiffeID: Self.web, ttl: ttl, extra: extra)
    }

    /// The serial of the certificate a new TLS handshake with the agent gets, via `openssl s_client`.
    func servedSerial(_ agent: AgentProcess, _ ca: CAFixture) throws -> String {
        let result = try openssl(["s_client", "-connect", agent.address, "-tls1_3", "-CAfile", ca.caDir + "/bundle.pem",
                                  "-cert", ca.caDir + "/admin.pem", "-key", ca.caDir + "/admin_key.pem"], stdin: Data())
        guard result.stdout.contains("Verify return code: 0 (ok)") else { throw CLIFailure("s_client: \(result.stdout) \(result.stderr)") }
        return try X509Certificate(pem: result.stdout).serialHex
    }

    func testRotatesThreeTimesWithoutDroppingAnOpenConnection() async throws {
        let ca = try CAFixture()
        // Hooks: a command that records each new serial, and a process that counts SIGHUPs.
        let hookLog = ca.root + "/hook.log", hupLog = ca.root + "/hup.log", pidFile = ca.root + "/reloader.pid"
        let reloader = Process()
        reloader.executableURL = URL(fileURLWithPath: "/bin/sh")
        reloader.arguments = ["-c", "trap 'echo hup >> \(hupLog)' HUP; while true; do sleep 0.05; done"]
        try reloader.run()
        defer { reloader.terminate() }
        try String(reloader.processIdentifier).write(toFile: pidFile, atomically: true, encoding: .utf8)
        // 9 s certificates: a rotation about every 6 s, so three take under 20 s.
        let (agent, out) = try startAgent(ca, ttl: "9s", extra: [
            "--metrics", "127.0.0.1:0", "--exec", "echo $VOUCH_SERIAL >> \(hookLog)", "--signal", "HUP", "--pid-file", pidFile])
        let pid = agent.pid
        let admin = ca.admin
        let agentAddress = HostPort(host: "127.0.0.1", port: agent.port)

        // Watch the files while rotations happen: every read must parse and the key stay 0600.
        let fileChecks = Mutex((reads: 0, broken: [String]()))
        let watcher = Task.detached {
            while !Task.isCancelled {
                do {
                    let cert = try X509Certificate(pem: String(contentsOfFile: out + "/svid.pem", encoding: .utf8))
                    _ = try PrivateKey(pem: String(contentsOfFile: out + "/svid_key.pem", encoding: .utf8))
                    _ = try X509Certificate.all(inPEM: String(contentsOfFile: out + "/chain.pem", encoding: .utf8))
                    let mode = try FileManager.default.attributesOfItem(atPath: out + "/svid_key.pem")[.posixPermissions] as? Int
                    fileChecks.withLock {
                        $0.reads += 1
                        if mode != 0o600 { $0.broken.append("key mode \(String(mode ?? 0, radix: 8))") }
                        if cert.serialHex.isEmpty { $0.broken.append("empty serial") }
                    }
                } catch {
                    fileChecks.withLock { $0.broken.append("\(error)") }
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        defer { watcher.cancel() }

        var handshakeSerials = [try servedSerial(agent, ca)]
        var calls = 0, failures = 0
        // One gRPC connection, held open, calling GetStatus every 100 ms through three rotations.
        try await VouchClient.with(server: agentAddress, credentials: admin.expecting(Self.web)) { client in
            let status = Vouch_V1_Agent.Client(wrapping: client)
            var lastSerial = ""
            let deadline = Date().addingTimeInterval(75)
            while Date() < deadline {
                do {
                    let reply = try await status.getStatus(Vouch_V1_GetStatusRequest(), options: VouchClient.options(timeout: .seconds(2)))
                    calls += 1
                    XCTAssertEqual(reply.callerSpiffeID, "spiffe://example.org/vouch/admin")
                    if reply.serial != lastSerial {
                        if !lastSerial.isEmpty {
                            // A new handshake gets the rotated certificate.
                            let served = try servedSerial(agent, ca)
                            XCTAssertEqual(served, reply.serial, "new handshakes get the new certificate")
                            handshakeSerials.append(served)
                        }
                        lastSerial = reply.serial
                    }
                    if reply.rotations >= 3 { break }
                } catch {
                    failures += 1
                }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        XCTAssertEqual(failures, 0, "calls on the open connection never fail across rotations")
        XCTAssertGreaterThan(calls, 100)
        XCTAssertGreaterThanOrEqual(handshakeSerials.count, 4, "initial certificate plus three rotations: \(handshakeSerials)")
        XCTAssertEqual(Set(handshakeSerials).count, handshakeSerials.count, "each rotation serves a new serial")
        XCTAssertTrue(agent.process.isRunning)
        XCTAssertEqual(agent.pid, pid, "the agent never restarts")

        // Prometheus metrics: rotations, failures, seconds until expiry.
        XCTAssertTrue(eventually { agent.log.contains("vouch agent metrics on ") })
        let metricsLine = agent.log.split(separator: "\n").first { $0.hasPrefix("vouch agent metrics on ") } ?? ""
        let metrics = try execute("/usr/bin/curl", ["-sf", "http://\(metricsLine.dropFirst("vouch agent metrics on ".count))/metrics"])
        XCTAssertEqual(metrics.status, 0, metrics.stderr)
        let rotations = metrics.stdout.split(separator: "\n").first { $0.hasPrefix("vouch_agent_rotations_total ") }
        XCTAssertGreaterThanOrEqual(Double(rotations?.split(separator: " ").last ?? "") ?? 0, 3, metrics.stdout)
        let expiresIn = metrics.stdout.split(separator: "\n").first { $0.hasPrefix("vouch_agent_certificate_expires_in_seconds ") }
        let seconds = Double(expiresIn?.split(separator: " ").last ?? "") ?? -1
        XCTAssertTrue(seconds > 0 && seconds <= 9, metrics.stdout)
        XCTAssertTrue(metrics.stdout.contains("vouch_agent_renewal_failures_total"), metrics.stdout)

        let hooked = try String(contentsOfFile: hookLog, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(Array(hooked.prefix(3)), Array(handshakeSerials.dropFirst().prefix(3)), "--exec ran after each rotation with its serial")
        try await Task.sleep(for: .milliseconds(200))
        let hups = (try? String(contentsOfFile: hupLog, encoding: .utf8))?.split(separator: "\n").count ?? 0
        XCTAssertGreaterThanOrEqual(hups, 3, "--signal HUP reached the process in --pid-file after each rotation")

        let checks = fileChecks.withLock { $0 }
        XCTAssertGreaterThan(checks.reads, 100)
        XCTAssertEqual(checks.broken, [], "files were always complete")
        XCTAssertEqual(agent.stop(), 0, "graceful exit on SIGTERM")
    }

    func testKeepsServingThroughACAOutageAndRenewsWhenItIsBack() async throws {
        let ca = try CAFixture()
        // 20 s certificates renewed at half-life (~9 s after enrollment, with the 2 s backdate); the CA is
        // down from ~1 s to ~15 s, so renewals fail at ~9, ~10 and ~12 s and the one at ~16 s succeeds.
        let (agent, _) = try startAgent(ca, ttl: "20s", extra: ["--renew-fraction", "0.5", "--max-backoff", "4s"])
        let first = try servedSerial(agent, ca)
        ca.server.kill()
        try await Task.sleep(for: .seconds(14))
        XCTAssertEqual(try servedSerial(agent, ca), first, "the last good certificate is served while the CA is down")
        let delays = agent.log.split(separator: "\n").filter { $0.contains("renewal failed") }.compactMap { line -> Double? in
            guard let range = line.range(of: "retry_in=") else { return nil }
            return Double(line[range.upperBound...].prefix { $0.isNumber || $0 == "." })
        }
        XCTAssertGreaterThanOrEqual(delays.count, 3, agent.log)
        XCTAssertLessThan(delays[0], delays[2], "backoff grows: \(delays)")
        XCTAssertLessThanOrEqual(delays.max() ?? 0, 4 * 1.2 + 0.05, "backoff is capped: \(delays)")

        try ca.startServerOnSamePort()
        var renewed = first
        let deadline = Date().addingTimeInterval(10)
        while renewed == first, Date() < deadline {
            try await Task.sleep(for: .milliseconds(500))
            renewed = try servedSerial(agent, ca)
        }
        XCTAssertNotEqual(renewed, first, "renewed once the CA was back: \(agent.log)")
        XCTAssertTrue(eventually { agent.log.contains("rotated") })
    }

    func testASlowCAHitsTheDeadlineAndTheAgentKeepsServing() async throws {
        let ca = try CAFixture()
        let proxy = try SlowProxy(upstreamPort: ca.server.port)
        let out = ca.root + "/agent", tokenFile = ca.root + "/token"
        try ca.createToken(spiffeID: Self.web, dns: ["localhost"], ips: ["127.0.0.1"]).write(toFile: tokenFile, atomically: true, encoding: .utf8)
        // 30 s certificates renewed at about 15 s, through a proxy that stops answering.
        let agent = try AgentProcess(arguments: ["--ca", "127.0.0.1:\(proxy.port)", "--ca-bundle", ca.caDir + "/bundle.pem",
                                                 "--token-file", tokenFile, "--out", out, "--cert-ttl", "30s", "--renew-fraction", "0.5",
                                                 "--rpc-timeout", "2s", "--max-backoff", "2s"])
        defer { agent.stop() }
        let first = try servedSerial(agent, ca)
        proxy.holdReplies = true
        XCTAssertTrue(eventually(timeout: 25) { agent.log.contains("deadlineExceeded") }, "renewal hit its deadline: \(agent.log)")
        XCTAssertEqual(try servedSerial(agent, ca), first, "the last good certificate is still served")
        proxy.holdReplies = false
        var serial = first
        let deadline = Date().addingTimeInterval(10)
        while serial == first, Date() < deadline {
            try await Task.sleep(for: .milliseconds(300))
            serial = try servedSerial(agent, ca)
        }
        XCTAssertNotEqual(serial, first, "renewed once the CA answered in time again: \(agent.log)")
    }

    func testAfterExpiryItSaysANewTokenIsNeededAndReEnrollsWithOne() async throws {
        let ca = try CAFixture()
        let (agent, _) = try startAgent(ca, ttl: "8s", extra: ["--max-backoff", "1s"])
        let first = try servedSerial(agent, ca)
        ca.server.kill()
        try await Task.sleep(for: .seconds(10))
        XCTAssertTrue(eventually { agent.log.contains("expired") }, agent.log)
        XCTAssertTrue(agent.log.contains("vouch token create --spiffe-id \(Self.web)"), agent.log)
        // It waits for a token instead of calling the dead CA again and again.
        let attempts = agent.log.components(separatedBy: "renewal failed").count
        try await Task.sleep(for: .seconds(3))
        XCTAssertEqual(agent.log.components(separatedBy: "renewal failed").count, attempts, "no retries after expiry")

        try ca.startServerOnSamePort()
        try ca.createToken(spiffeID: Self.web, dns: ["localhost"], ips: ["127.0.0.1"])
            .write(toFile: ca.root + "/token", atomically: true, encoding: .utf8)
        var serial = first
        let deadline = Date().addingTimeInterval(15)
        while serial == first, Date() < deadline {
            try await Task.sleep(for: .milliseconds(500))
            serial = (try? servedSerial(agent, ca)) ?? first  // the expired one fails verification
        }
        XCTAssertNotEqual(serial, first, "re-enrolled with the new token without a restart: \(agent.log)")
    }

    func testARevokedAgentStopsRenewingAndAsksForANewToken() async throws {
        let ca = try CAFixture()
        let (agent, _) = try startAgent(ca, ttl: "9s", extra: ["--max-backoff", "1s"])
        let first = try servedSerial(agent, ca)
        _ = try await ca.revoke(first, reason: 1, as: ca.admin)
        XCTAssertTrue(eventually(timeout: 15) { agent.log.contains("was revoked and the CA will not renew it") }, agent.log)
        XCTAssertTrue(agent.log.contains("vouch token create --spiffe-id \(Self.web)"), agent.log)
        try ca.createToken(spiffeID: Self.web, dns: ["localhost"], ips: ["127.0.0.1"])
            .write(toFile: ca.root + "/token", atomically: true, encoding: .utf8)
        var serial = first
        let deadline = Date().addingTimeInterval(10)
        while serial == first, Date() < deadline {
            try await Task.sleep(for: .milliseconds(300))
            serial = (try? servedSerial(agent, ca)) ?? first
        }
        XCTAssertNotEqual(serial, first, "re-enrolled with the new token: \(agent.log)")
    }

    func testRestartReusesTheIdentityOnDiskWithoutAToken() async throws {
        let ca = try CAFixture()
        let (agent, out) = try startAgent(ca, ttl: "10m")
        let serial = try servedSerial(agent, ca)
        XCTAssertEqual(agent.stop(), 0)
        let again = try AgentProcess(arguments: ca.agentArguments(out: out, ttl: "10m"))
        XCTAssertEqual(try servedSerial(again, ca), serial, "the second start serves the same certificate, no token needed")
        again.stop()
    }

    func testFirstStartWithoutTokenFailsWithAnInstruction() throws {
        let ca = try CAFixture()
        let result = try vouch("agent", "--ca", ca.server.address, "--ca-bundle", ca.caDir + "/bundle.pem",
                               "--out", ca.root + "/empty")
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("vouch token create"), result.stderr)
    }
}
