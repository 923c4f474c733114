import Foundation
import GRPCCore
import Synchronization
import VouchAPI
import VouchCrypto
import XCTest

/// Several active CA replicas on one PostgreSQL database, as an operator runs them: real server
/// and agent processes, replicas killed with SIGKILL, a token's uses spent across replicas.
final class ReplicaTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web", api = "spiffe://example.org/svc/api"

    func testKillNineOfEitherReplicaLosesNoCertificateAndNoAgentToAgentCall() async throws {
        let set = try await ReplicaSet()
        // Two agents given both replicas, 20-second certificates, calling each other every 100 ms.
        let webAgent = try set.startAgent(Self.web, ttl: "20s"), apiAgent = try set.startAgent(Self.api, ttl: "20s")
        let web = webAgent.agent, webOut = webAgent.out, api = apiAgent.agent, apiOut = apiAgent.out
        let calls = AgentCalls()
        let bundle = set.caDir + "/bundle.pem"
        let webID = Self.web, apiID = Self.api
        let callers = Task { await calls.callEachOther(webOut, web, webID, apiOut, api, apiID, bundle: bundle) }
        defer { callers.cancel() }
        // 16 clients enrolling and renewing across both replicas, each moving to the other replica
        // when its call fails; every certificate a client received is noted.
        let received = Serials()
        let tokens = try (0..<16).map { try set.createToken(spiffeID: "spiffe://example.org/load/\($0)") }
        let clients = Task { await ReplicaTests.enrollAndRenewAll(set, tokens: tokens, received: received) }
        defer { clients.cancel() }

        for (victim, survivor) in [(0, 1), (1, 0)] {
            try await Task.sleep(for: .seconds(2))
            set.replicas[victim].kill()
            let rotationsBefore = [web, api].map(Self.rotations)
            // Long enough for each agent to renew through the survivor (renewal at about 2/3 of 20 s).
            let deadline = Date().addingTimeInterval(25)
            while Date() < deadline, zip([web, api].map(Self.rotations), rotationsBefore).contains(where: { $0 <= $1 }) {
                try await Task.sleep(for: .milliseconds(200))
            }
            XCTAssertEqual(zip([web, api].map(Self.rotations), rotationsBefore).filter { $0 > $1 }.count, 2,
                           "both agents rotated through replica \(survivor) after replica \(victim) was killed: \(web.log)\n\(api.log)")
            try set.restart(victim)
        }
        callers.cancel()
        clients.cancel()
        _ = await (callers.result, clients.result)

        let serials = received.all
        XCTAssertGreaterThan(serials.count, 64, "the clients kept getting certificates")
        XCTAssertEqual(try set.missingFromDatabase(serials), [], "every certificate a client received is in PostgreSQL")
        let (made, failed) = calls.counts
        XCTAssertGreaterThan(made, 200)
        XCTAssertEqual(failed, [], "agent-to-agent calls that failed")
        print("replicas: \(made) agent-to-agent calls, \(failed.count) failed; \(serials.count) certificates received by 16 clients,"
              + " all in PostgreSQL; rotations web \(Self.rotations(web)), api \(Self.rotations(api))")
    }

    static func enrollAndRenewAll(_ set: ReplicaSet, tokens: [String], received: Serials) async {
        await withTaskGroup(of: Void.self) { group in
            for (index, token) in tokens.enumerated() {
                group.addTask { try? await enrollAndRenew(set, token: token, first: index % 2, received: received) }
            }
        }
    }

    /// Enrolls, then renews from the newest certificate until cancelled, moving to the other
    /// replica when a call fails for want of an answer.
    static func enrollAndRenew(_ set: ReplicaSet, token: String, first: Int, received: Serials) async throws {
        var replica = first
        func onEither<T: Sendable>(_ body: (Int) async throws -> T) async throws -> T {
            for _ in 0..<20 {
                do {
                    return try await body(replica)
                } catch let error as RPCError where error.code == .unavailable || error.code == .deadlineExceeded {
                    replica = 1 - replica
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            throw CLIFailure("no replica answered")
        }
        var key = try PrivateKey(generating: .p256)
        var issued = try await onEither { try await set.enroll($0, token: token, key: key) }
        received.add(issued.serial)
        let name = "client-\(UUID().uuidString.prefix(8))"
        while !Task.isCancelled {
            let credentials = try set.fixture.writeIdentity(issued, key: key, name: name)
            let newKey = try PrivateKey(generating: .p256)
            do {
                issued = try await onEither { try await set.renew($0, as: credentials, newKey: newKey) }
            } catch is CancellationError {
                return
            }
            key = newKey
            received.add(issued.serial)
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    static func rotations(_ agent: AgentProcess) -> Int {
        agent.log.split(separator: "\n").filter { $0.contains("[VouchAgent] rotated") }.count
    }

    func testATenUseTokenYieldsExactlyTenCertificatesFrom64ConcurrentEnrollsOverBothReplicas() async throws {
        let set = try await ReplicaSet()
        let token = try set.createToken(spiffeID: Self.web, uses: 10)
        let outcomes = try await withThrowingTaskGroup(of: Result<String, RPCError>.self) { group in
            for attempt in 0..<64 {
                group.addTask {
                    do {
                        return .success(try await set.enroll(attempt % 2, token: token, key: try PrivateKey(generating: .p256)).serial)
                    } catch let error as RPCError {
                        return .failure(error)
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let issued = outcomes.compactMap { try? $0.get() }
        XCTAssertEqual(issued.count, 10, "exactly the token's uses")
        XCTAssertEqual(Set(issued).count, 10)
        for case .failure(let error) in outcomes {
            XCTAssertEqual(error.code, .unauthenticated, "\(error)")
        }
        let stored = try runPSQL(set.databaseURL, "SELECT count(*) FROM certificate WHERE spiffe_id = '\(Self.web)'")
        XCTAssertEqual(stored, "10")
        XCTAssertEqual(try set.missingFromDatabase(issued), [])
        let audit = try execute(VouchBinary.path, ["audit", "verify", "--dir", set.caDir, "--database", set.databaseURL])
        XCTAssertEqual(audit.status, 0, "the audit chain written by both replicas verifies: \(audit.stdout)\(audit.stderr)")
    }

    func testARevocationThroughOneReplicaIsEnforcedByAnAgentFollowingTheOtherWithinASecond() async throws {
        let set = try await ReplicaSet()
        // The agent follows replica 1 only.
        let tokenFile = set.fixture.root + "/token-web", out = set.fixture.root + "/agent-web"
        try set.createToken(spiffeID: Self.web).write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let agent = try AgentProcess(arguments: ["--ca", set.replicas[1].address, "--ca-bundle", set.caDir + "/bundle.pem",
                                                 "--out", out, "--cert-ttl", "10m", "--token-file", tokenFile])
        defer { agent.stop() }
        let key = try PrivateKey(generating: .p256)
        let token = try set.createToken(spiffeID: Self.api, uses: 2)
        let issued = try await set.enroll(0, token: token, key: key)
        let probe = try await set.enroll(0, token: token, key: try PrivateKey(generating: .p256))
        let client = try set.fixture.writeIdentity(issued, key: key, name: "api")
        let status = { try await VouchClient.with(server: HostPort(host: "127.0.0.1", port: agent.port),
                                                  credentials: client.expecting(Self.web)) {
            try await Vouch_V1_Agent.Client(wrapping: $0).getStatus(Vouch_V1_GetStatusRequest(), options: VouchClient.options(timeout: .seconds(3)))
        } }
        _ = try await status()
        // A first revocation through replica 0 shows the agent's stream from replica 1 is connected.
        _ = try await set.fixture.revoke(probe.serial, as: set.fixture.admin)
        XCTAssertTrue(eventually(timeout: 5) {
            agent.log.split(separator: "\n").contains { $0.contains("revocation hint received") && $0.contains(probe.serial) }
        }, agent.log)

        _ = try await set.fixture.revoke(issued.serial, as: set.fixture.admin)  // through replica 0
        let revokedAt = Date()
        var refusedAfter: TimeInterval?
        while Date().timeIntervalSince(revokedAt) < 3 {
            do {
                _ = try await status()
            } catch {
                refusedAfter = Date().timeIntervalSince(revokedAt)
                break
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        XCTAssertLessThan(refusedAfter ?? 99, 1.0, "the agent following replica 1 refused the client revoked through replica 0: \(agent.log)")
        print("revocation through replica 0: refused by the agent following replica 1 after \(String(format: "%.3f", refusedAfter ?? 99)) s")
        // Replica 1 itself refuses the certificate at the handshake.
        await assertRPCError(.unavailable, "replica 1 refuses the revoked certificate at the handshake") {
            try await set.renew(1, as: client, newKey: try PrivateKey(generating: .p256))
        }
    }
}

extension ReplicaTests {
    /// A replica on PostgreSQL writes nothing into its CA directory, so the directory can be a
    /// read-only copy (a Kubernetes Secret) on every host.
    func testAReplicaOnPostgreSQLServesFromAReadOnlyCADirectory() async throws {
        let set = try await ReplicaSet(count: 1)
        let readOnly = set.fixture.root + "/ca-read-only"
        try FileManager.default.createDirectory(atPath: readOnly, withIntermediateDirectories: false)
        guard try sh("mount --bind '\(set.caDir)' '\(readOnly)' && mount -o remount,ro,bind '\(readOnly)'").status == 0 else {
            _ = try? sh("umount '\(readOnly)'")
            throw XCTSkip("needs permission to mount")
        }
        defer { _ = try? sh("umount -l '\(readOnly)'") }
        XCTAssertNotEqual(try sh("touch '\(readOnly)/probe'").status, 0, "the mount is read-only, even for root")
        let replica = try ServerProcess(directory: readOnly, extraArguments: ["--database", set.databaseURL])
        defer { replica.stop() }
        let token = try set.createToken(spiffeID: Self.web)
        let issued = try await VouchClient.with(server: HostPort(host: "127.0.0.1", port: replica.port), credentials: set.fixture.anonymous) {
            var request = Vouch_V1_EnrollRequest()
            request.token = token
            request.csr = Data(try CertificateSigningRequest.create(key: try PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames()).der)
            return try await Vouch_V1_CertificateAuthority.Client(wrapping: $0).enroll(request, options: VouchClient.options())
        }
        XCTAssertEqual(try set.missingFromDatabase([issued.serial]), [])
    }
}

extension ReplicaTests {
    /// A session that holds the writer lock and stops (a replica frozen or cut off inside a
    /// transaction) makes the others answer `unavailable` within the lock timeout, not hang.
    func testAWriterLockHeldElsewhereIsUnavailableWithinItsBound() async throws {
        let set = try await ReplicaSet(count: 1)
        let token = try set.createToken(spiffeID: Self.web, uses: 2)
        let url = set.databaseURL
        let holder = Thread {
            _ = try? runPSQL(url, "BEGIN; SELECT pg_advisory_xact_lock(\(0x766F_7563_6801)); SELECT pg_sleep(5); COMMIT;")
        }
        holder.start()
        XCTAssertTrue(eventually(timeout: 5) {
            (try? runPSQL(url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")) == "1"
        })
        let start = Date()
        await assertRPCError(.unavailable, "an enrollment while another session holds the writer lock") {
            try await set.enroll(0, token: token, key: try PrivateKey(generating: .p256))
        }
        let waited = Date().timeIntervalSince(start)
        XCTAssertGreaterThan(waited, 2.5)
        XCTAssertLessThan(waited, 4.5, "the lock timeout (3 s) bounds the wait, inside the client's deadline")
        XCTAssertTrue(eventually(timeout: 10) { (try? runPSQL(url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")) == "0" })
        _ = try await set.enroll(0, token: token, key: try PrivateKey(generating: .p256))
    }
}

extension ReplicaTests {
    /// Replicas need PostgreSQL: a second server on one SQLite database would never see the first
    /// one's revocations, so it refuses to start and says why.
    func testASecondServerOnOneSQLiteDatabaseRefusesToStart() throws {
        let ca = try CAFixture()
        XCTAssertThrowsError(try ServerProcess(directory: ca.caDir)) { error in
            XCTAssertTrue("\(error)".contains("two servers on one SQLite database would not see each other's revocations"), "\(error)")
            XCTAssertTrue("\(error)".contains("process \(ca.server.process.processIdentifier) has"), "\(error)")
        }
        XCTAssertNoThrow(try ca.restartServer(), "once the first has stopped, a server starts there again")
    }
}

/// Serials collected from concurrent tasks.
final class Serials: Sendable {
    private let serials = Mutex<[String]>([])
    func add(_ serial: String) { serials.withLock { $0.append(serial) } }
    var all: [String] { serials.withLock { $0 } }
}

/// Calls from one agent's identity to another agent's listener, counting failures.
final class AgentCalls: Sendable {
    private let state = Mutex((made: 0, failed: [String]()))
    var counts: (made: Int, failed: [String]) { state.withLock { ($0.made, $0.failed) } }

    /// Each agent calls the other every 100 ms until cancelled.
    func callEachOther(_ oneOut: String, _ one: AgentProcess, _ oneID: String,
                       _ twoOut: String, _ two: AgentProcess, _ twoID: String, bundle: String) async {
        while !Task.isCancelled {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.call(from: oneOut, to: two, expecting: twoID, bundle: bundle) }
                group.addTask { await self.call(from: twoOut, to: one, expecting: oneID, bundle: bundle) }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Each agent calls the other every 100 ms until cancelled, trusting only its own bundle.pem
    /// as it is at each call: what a workload reading the agent's files does.
    func callEachOtherWithOwnBundles(_ oneOut: String, _ one: AgentProcess, _ oneID: String,
                                     _ twoOut: String, _ two: AgentProcess, _ twoID: String) async {
        while !Task.isCancelled {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.call(from: oneOut, to: two, expecting: twoID, bundle: nil) }
                group.addTask { await self.call(from: twoOut, to: one, expecting: oneID, bundle: nil) }
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// - Parameter bundle: the roots to verify the callee with; nil: the caller's own bundle.pem.
    func call(from out: String, to agent: AgentProcess, expecting spiffeID: String, bundle: String?) async {
        do {
            let credentials = try Self.snapshot(of: out, bundle: bundle)
            defer { try? FileManager.default.removeItem(atPath: (credentials.certificatePEMPath! as NSString).deletingLastPathComponent) }
            let status = try await VouchClient.with(server: HostPort(host: "127.0.0.1", port: agent.port),
                                                    credentials: credentials.expecting(spiffeID)) {
                try await Vouch_V1_Agent.Client(wrapping: $0).getStatus(Vouch_V1_GetStatusRequest(), options: VouchClient.options(timeout: .seconds(3)))
            }
            state.withLock { $0.made += 1 }
            if status.spiffeID != spiffeID { state.withLock { $0.failed.append("answered as \(status.spiffeID)") } }
        } catch where !Task.isCancelled {
            state.withLock { $0.failed.append("\(Date()): \(error)") }
        } catch {}  // the test stopped calling
    }

    /// The agent's certificate and key as they are on disk now, copied once both belong together
    /// (a rotation between reading one and the other would pair them wrongly).
    static func snapshot(of out: String, bundle: String?) throws -> VouchClient.Credentials {
        for _ in 0..<20 {
            let roots = try bundle == nil ? String(contentsOfFile: out + "/bundle.pem", encoding: .utf8) : nil
            let certificate = try String(contentsOfFile: out + "/svid.pem", encoding: .utf8)
            let chain = try String(contentsOfFile: out + "/chain.pem", encoding: .utf8)
            let key = try String(contentsOfFile: out + "/svid_key.pem", encoding: .utf8)
            guard try X509Certificate(pem: certificate).matches(try PrivateKey(pem: key)),
                  try String(contentsOfFile: out + "/svid.pem", encoding: .utf8) == certificate else { continue }
            let directory = try temporaryDirectory()
            try (certificate + chain).write(toFile: directory + "/cert.pem", atomically: true, encoding: .utf8)
            try key.write(toFile: directory + "/key.pem", atomically: true, encoding: .utf8)
            try roots?.write(toFile: directory + "/bundle.pem", atomically: true, encoding: .utf8)
            return VouchClient.Credentials(bundlePEMPath: bundle ?? directory + "/bundle.pem", certificatePEMPath: directory + "/cert.pem", keyPEMPath: directory + "/key.pem")
        }
        throw CLIFailure("no matching certificate and key in \(out)")
    }
}
