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

    /// The schedule itself (when, how often, backoff, expiry) is IdentityKeeperTests' on a moved
    /// clock; these tests show the real process does it: files, listener, hooks, metrics, CA calls.
    func testRotatesTwiceWithoutDroppingAnOpenConnection() async throws {
        let ca = try CAFixture()
        // Hooks: a command that records each new serial, and a process that counts SIGHUPs.
        let hookLog = ca.root + "/hook.log", hupLog = ca.root + "/hup.log", pidFile = ca.root + "/reloader.pid"
        let reloader = Process()
        reloader.executableURL = URL(fileURLWithPath: "/bin/sh")
        reloader.arguments = ["-c", "trap 'echo hup >> \(hupLog)' HUP; while true; do sleep 0.05; done"]
        try reloader.run()
        defer { reloader.terminate() }
        try String(reloader.processIdentifier).write(toFile: pidFile, atomically: true, encoding: .utf8)
        // 5 s certificates (the CA's shortest) renewed at 0.3 of their lifetime: a rotation about every 1.6 s.
        // Hooks on rotations only, at once (CRL and bundle changes: HookChangeProcessTests).
        let (agent, out) = try startAgent(ca, ttl: "5s", extra: [
            "--renew-fraction", "0.3", "--metrics", "127.0.0.1:0", "--exec", "echo $VOUCH_SERIAL >> \(hookLog)", "--signal", "HUP", "--pid-file", pidFile,
            "--hook-on", "certificate", "--hook-debounce", "0"])
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
        var calls = 0, failures = 0, serialsSeenOnTheConnection = 0
        // One gRPC connection, held open, calling GetStatus every 50 ms through two rotations.
        try await VouchClient.with(server: agentAddress, credentials: admin.expecting(Self.web)) { client in
            let status = Vouch_V1_Agent.Client(wrapping: client)
            var lastSerial = ""
            let deadline = Date().addingTimeInterval(30)
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
                        serialsSeenOnTheConnection += 1
                    }
                    if reply.rotations >= 2 { break }
                } catch {
                    failures += 1
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        XCTAssertEqual(failures, 0, "calls on the open connection never fail across rotations")
        XCTAssertGreaterThan(calls, 3)
        XCTAssertEqual(serialsSeenOnTheConnection, 3, "the one connection lived through both rotations")
        XCTAssertGreaterThanOrEqual(handshakeSerials.count, 3, "initial certificate plus two rotations: \(handshakeSerials)")
        XCTAssertEqual(Set(handshakeSerials).count, handshakeSerials.count, "each rotation serves a new serial")
        XCTAssertTrue(agent.process.isRunning)
        XCTAssertEqual(agent.pid, pid, "the agent never restarts")

        // Prometheus metrics: rotations, failures, seconds until expiry.
        XCTAssertTrue(eventually { agent.log.contains("vouch agent metrics on ") })
        let metricsAddress = announcedAddress(in: agent.log, after: "vouch agent metrics on ") ?? ""
        let metrics = try execute("/usr/bin/curl", ["-sf", "http://\(metricsAddress)/metrics"])
        XCTAssertEqual(metrics.status, 0, metrics.stderr)
        let rotations = metrics.stdout.split(separator: "\n").first { $0.hasPrefix("vouch_agent_rotations_total ") }
        XCTAssertGreaterThanOrEqual(Double(rotations?.split(separator: " ").last ?? "") ?? 0, 2, metrics.stdout)
        let expiresIn = metrics.stdout.split(separator: "\n").first { $0.hasPrefix("vouch_agent_certificate_expires_in_seconds ") }
        let seconds = Double(expiresIn?.split(separator: " ").last ?? "") ?? -1
        XCTAssertTrue(seconds > 0 && seconds <= 5, metrics.stdout)
        XCTAssertTrue(metrics.stdout.contains("vouch_agent_renewal_failures_total"), metrics.stdout)

        let hooked = try String(contentsOfFile: hookLog, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(Array(hooked.prefix(2)), Array(handshakeSerials.dropFirst().prefix(2)), "--exec ran after each rotation with its serial")
        try await Task.sleep(for: .milliseconds(200))
        let hups = (try? String(contentsOfFile: hupLog, encoding: .utf8))?.split(separator: "\n").count ?? 0
        XCTAssertGreaterThanOrEqual(hups, 2, "--signal HUP reached the process in --pid-file after each rotation")

        let checks = fileChecks.withLock { $0 }
        XCTAssertGreaterThan(checks.reads, 20)
        XCTAssertEqual(checks.broken, [], "files were always complete")
        XCTAssertEqual(agent.stop(), 0, "graceful exit on SIGTERM")
    }

    func testKeepsServingThroughACAOutageAndRenewsWhenItIsBack() async throws {
        let ca = try CAFixture()
        // 8 s certificates renewed at a quarter of their lifetime (~1.4 s after enrollment); the CA is
        // down from the start until two renewals have failed, then back well before expiry.
        let (agent, _) = try startAgent(ca, ttl: "8s", extra: ["--renew-fraction", "0.25", "--max-backoff", "1s"])
        let first = try servedSerial(agent, ca)
        ca.server.kill()
        XCTAssertTrue(eventually(timeout: 10) { agent.log.components(separatedBy: "renewal failed").count > 2 }, agent.log)
        XCTAssertEqual(try servedSerial(agent, ca), first, "the last good certificate is served while the CA is down")
        XCTAssertTrue(agent.log.contains("retry_in="), agent.log)

        try ca.startServerOnSamePort()
        var renewed = first
        let deadline = Date().addingTimeInterval(10)
        while renewed == first, Date() < deadline {
            try await Task.sleep(for: .milliseconds(200))
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
        // 8 s certificates renewed at about 1.4 s, through a proxy that stops answering.
        let agent = try AgentProcess(arguments: ["--ca", "127.0.0.1:\(proxy.port)", "--ca-bundle", ca.caDir + "/bundle.pem",
                                                 "--token-file", tokenFile, "--out", out, "--cert-ttl", "8s", "--renew-fraction", "0.25",
                                                 "--rpc-timeout", "1s", "--max-backoff", "1s"])
        defer { agent.stop() }
        let first = try servedSerial(agent, ca)
        proxy.holdReplies = true
        XCTAssertTrue(eventually(timeout: 10) { agent.log.contains("deadlineExceeded") }, "renewal hit its deadline: \(agent.log)")
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

    /// Also the process-level path after expiry (IdentityKeeperTests: expiry): the agent waits for a
    /// token, enrolls without a restart, and its listener serves the new certificate.
    func testARevokedAgentStopsRenewingAndAsksForANewToken() async throws {
        let ca = try CAFixture()
        // 6 s certificates renewed at ~1.6 s: by then the pushed revocation has brought the signed CRL.
        let (agent, _) = try startAgent(ca, ttl: "6s", extra: ["--renew-fraction", "0.3", "--max-backoff", "1s"])
        let first = try servedSerial(agent, ca)
        _ = try await ca.revoke(first, reason: 1, as: ca.admin)
        XCTAssertTrue(eventually(timeout: 10) { agent.log.contains("was revoked and the CA will not renew it") }, agent.log)
        XCTAssertTrue(agent.log.contains("vouch token create --spiffe-id \(Self.web)"), agent.log)
        try ca.createToken(spiffeID: Self.web, dns: ["localhost"], ips: ["127.0.0.1"])
            .write(toFile: ca.root + "/token", atomically: true, encoding: .utf8)
        var serial = first
        let deadline = Date().addingTimeInterval(10)
        while serial == first, Date() < deadline {
            try await Task.sleep(for: .milliseconds(200))
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
