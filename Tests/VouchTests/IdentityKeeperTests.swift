import Foundation
import Synchronization
import Testing
import VouchAPI
@testable import VouchAgent
import VouchAuthority
import VouchCrypto
import VouchTLS

/// The agent's renewal logic against the real authority core, timed by a clock the test moves:
/// rotation, outage backoff, expiry and revocation, each in milliseconds of real time.
@Suite("Agent identity keeping")
struct IdentityKeeperTests {
    static let web = "spiffe://example.org/svc/web"

    @Test func renewsAtTheScheduledTimeWritingEachNewIdentityAndServingIt() async throws {
        let agent = try await KeeperHarness()
        let first = try agent.onDisk()
        let rotation = try await agent.startRotating()
        defer { rotation.cancel() }

        var serials = [first.serialHex]
        for round in 1...3 {
            try await agent.clock.waitForSleepers()
            let held = try agent.onDisk()
            // 60 s certificates (backdated 6 s), renewed at half their lifetime, with no jitter.
            let due = held.notBefore.addingTimeInterval(held.notAfter.timeIntervalSince(held.notBefore) / 2)
            #expect(agent.clock.deadlines == [due])
            #expect(agent.state.current.nextRenewal == due)
            agent.clock.advance(to: due.addingTimeInterval(-1))
            try await agent.clock.waitForSleepers()
            #expect(agent.ca.renewCalls == round - 1, "nothing happens before the renewal time")

            agent.clock.advance(to: due)
            try await agent.waitFor { agent.state.current.rotations == round }
            let renewed = try agent.onDisk()
            #expect(renewed.serialHex == agent.state.current.serial)
            #expect(agent.served.withLock { $0.last } == renewed.serialHex, "the listener was reloaded with the new files")
            #expect(try await agent.ca.record(renewed.serialHex).renewedFrom == serials.last, "a renewal of the previous certificate")
            #expect(renewed.notBefore <= agent.clock.now && renewed.notAfter > agent.clock.now.addingTimeInterval(50))
            serials.append(renewed.serialHex)
        }
        #expect(Set(serials).count == 4)
        #expect(agent.ca.enrollCalls == 1, "the token is used once")
        #expect(agent.log.lines.filter { $0.contains("rotated") }.count == 3)
    }

    @Test func keepsTheCurrentIdentityThroughAnOutageWithGrowingCappedBackoffThenRenews() async throws {
        let agent = try await KeeperHarness()
        let first = try agent.onDisk()
        let rotation = try await agent.startRotating()
        defer { rotation.cancel() }
        agent.ca.isDown = true

        var delays: [TimeInterval] = []
        agent.clock.advance(to: agent.clock.deadlines[0])
        for attempt in 1...5 {
            try await agent.waitFor { agent.state.current.failures == attempt }
            try await agent.clock.waitForSleepers()
            let retry = agent.clock.deadlines[0]
            delays.append(retry.timeIntervalSince(agent.clock.now))
            if attempt < 5 { agent.clock.advance(to: retry) }
        }
        // Backoff 1 s doubling to the 4 s cap, each ±20%.
        for (delay, nominal) in zip(delays, [1.0, 2, 4, 4, 4]) {
            #expect(abs(delay - nominal) <= nominal * 0.2 + 0.001, "backoff \(delays)")
        }
        #expect(try agent.onDisk().serialHex == first.serialHex, "the last good identity stays on disk")
        #expect(agent.state.current.serial == first.serialHex)
        #expect(agent.state.current.lastError.contains("unavailable"), "\(agent.state.current.lastError)")
        #expect(agent.log.lines.filter { $0.contains("renewal failed; keeping the current certificate") }.count == 5)

        agent.ca.isDown = false
        agent.clock.advance(to: agent.clock.deadlines[0])
        try await agent.waitFor { agent.state.current.rotations == 1 }
        #expect(try agent.onDisk().serialHex != first.serialHex, "renewed once the CA was back")
        #expect(agent.state.current.lastError == "")
    }

    @Test func afterExpiryItStopsCallingTheCAAndReEnrollsWithANewToken() async throws {
        let agent = try await KeeperHarness()
        let first = try agent.onDisk()
        let rotation = try await agent.startRotating()
        defer { rotation.cancel() }
        agent.ca.isDown = true
        // Retry until the certificate has expired.
        while agent.clock.now < first.notAfter {
            agent.clock.advance(to: agent.clock.deadlines[0])
            try await agent.waitFor { agent.clock.deadlines.count == 1 }
        }
        try await agent.waitFor { agent.log.lines.contains { $0.contains("expired at") } }
        let instruction = agent.log.lines.first { $0.contains("expired at") } ?? ""
        #expect(instruction.contains("vouch token create --spiffe-id \(Self.web)"), "\(instruction)")
        #expect(instruction.contains(agent.tokenPath))
        #expect(agent.state.current.lastError == instruction.dropFirst("error ".count).trimmingCharacters(in: .whitespaces))

        // It waits for a token instead of calling the dead CA again and again.
        let calls = agent.ca.renewCalls + agent.ca.enrollCalls
        for _ in 0..<30 {
            try await agent.clock.waitForSleepers()
            agent.clock.advance(by: IdentityKeeper.tokenPollInterval)
        }
        #expect(agent.ca.renewCalls + agent.ca.enrollCalls == calls, "no calls to the CA while waiting for a token")

        agent.ca.isDown = false
        try await agent.ca.token(Self.web).write(toFile: agent.tokenPath, atomically: true, encoding: .utf8)
        try await agent.clock.waitForSleepers()
        agent.clock.advance(by: IdentityKeeper.tokenPollInterval)
        // Re-enrolled with the new token, and the listener was told to serve it (after the files).
        try await agent.waitFor { agent.served.withLock { $0.last } == (try? agent.onDisk().serialHex) }
        #expect(agent.ca.enrollCalls == 2)
        #expect(try agent.onDisk().serialHex != first.serialHex)
        #expect(agent.state.current.serial == (try agent.onDisk().serialHex))
        #expect(try agent.onDisk().notAfter > agent.clock.now)
    }

    @Test(arguments: [RevokedBy.signedCRL, .caRefusal])
    func aRevokedIdentityIsNotRenewedAndANewTokenIsAwaited(by source: RevokedBy) async throws {
        let agent = try await KeeperHarness()
        let first = try agent.onDisk()
        let rotation = try await agent.startRotating()
        defer { rotation.cancel() }
        switch source {
        case .signedCRL: agent.revocations.insert(first.serialHex)
        case .caRefusal: try await agent.ca.revoke(first.serialHex, reason: 4)
        }
        agent.clock.advance(to: agent.clock.deadlines[0])
        try await agent.waitFor { agent.log.lines.contains { $0.contains("was revoked and the CA will not renew it") } }
        #expect(agent.ca.renewCalls == (source == .signedCRL ? 0 : 1), "a certificate in the signed CRL is not even sent to the CA")
        for _ in 0..<5 {
            try await agent.clock.waitForSleepers()
            agent.clock.advance(by: IdentityKeeper.tokenPollInterval)
        }
        #expect(agent.ca.renewCalls == (source == .signedCRL ? 0 : 1), "no retries")

        try await agent.ca.token(Self.web).write(toFile: agent.tokenPath, atomically: true, encoding: .utf8)
        try await agent.clock.waitForSleepers()
        agent.clock.advance(by: IdentityKeeper.tokenPollInterval)
        try await agent.waitFor { (try? agent.onDisk().serialHex) != first.serialHex }
        #expect(agent.ca.enrollCalls == 2)
    }

    @Test func aCAClaimingARevocationItsSignedCRLDoesNotListIsNotBelieved() async throws {
        let agent = try await KeeperHarness()
        let first = try agent.onDisk()
        let rotation = try await agent.startRotating()
        defer { rotation.cancel() }
        // An impostor holding the server's key answers every renewal with the revoked refusal.
        agent.ca.claimsRevoked = true
        agent.clock.advance(to: agent.clock.deadlines[0])
        try await agent.waitFor { agent.state.current.failures == 1 }
        try await agent.clock.waitForSleepers()
        #expect(!agent.log.lines.contains { $0.contains("will not renew it") }, "no waiting for a token on the CA's word alone")
        #expect(agent.log.lines.contains { $0.contains("its signed CRL does not") })
        // The real CA answers again: renewal goes on.
        agent.ca.claimsRevoked = false
        agent.clock.advance(to: agent.clock.deadlines[0])
        try await agent.waitFor { agent.state.current.rotations == 1 }
        #expect(try agent.onDisk().serialHex != first.serialHex)
    }

    @Test func aRenewalTheDiskRefusesIsWrittenLaterAndNotRequestedAgain() async throws {
        let agent = try await KeeperHarness()
        let first = try agent.onDisk()
        let rotation = try await agent.startRotating()
        defer { rotation.cancel() }
        agent.diskFillsOnNextAnswer()
        agent.clock.advance(to: agent.clock.deadlines[0])
        try await agent.waitFor { agent.state.current.failures == 1 }
        let pending = try #require(agent.log.lines.first { $0.contains("could not write the new certificate") }
            .flatMap { $0.firstMatch(of: /renewed as ([0-9a-f]+)/)?.1 }.map(String.init))
        #expect(try await agent.ca.record(pending).renewedFrom == first.serialHex)

        // Retries write the certificate already issued, even past the expiry of the one on disk:
        // renewing again would be refused (a renewed certificate may renew only once more).
        while agent.clock.now <= first.notAfter {
            try await agent.clock.waitForSleepers()
            agent.clock.advance(to: agent.clock.deadlines[0])
            try await agent.waitFor { agent.clock.deadlines.count == 1 }
        }
        #expect(agent.ca.renewCalls == 1, "the CA is not asked again")
        #expect(try agent.onDisk().serialHex == first.serialHex, "the old set stays whole on disk")
        #expect(agent.served.withLock { $0.isEmpty }, "the listener keeps what it serves")
        #expect(!agent.log.lines.contains { $0.contains("will not renew it") }, "no new token needed")

        try agent.unblockChainFile()
        agent.clock.advance(to: agent.clock.deadlines[0])
        try await agent.waitFor { agent.state.current.rotations >= 1 }
        // Written and served; it is past its own renewal time by now, so the next renewal follows.
        #expect(agent.served.withLock { $0.first } == pending)
        #expect(try await agent.ca.record(pending).revokedAt == nil)
    }

    @Test func anEnrollmentTheDiskRefusesIsWrittenLaterWithoutAnotherTokenUse() async throws {
        let agent = try await KeeperHarness(enroll: false)
        // The disk fills up between the agent's check of its directory and the CA's answer.
        agent.diskFillsOnNextAnswer()
        let enrollment = Task { try await agent.keeper.obtainInitialIdentity() }
        for attempt in 1...3 {
            try await agent.waitFor { agent.state.current.failures == attempt }
            try await agent.clock.waitForSleepers()
            if attempt < 3 { agent.clock.advance(to: agent.clock.deadlines[0]) }
        }
        #expect(agent.ca.enrollCalls == 1, "the single-use token is spent once")
        #expect(!FileManager.default.fileExists(atPath: agent.files.certificate))
        #expect(agent.log.lines.contains { $0.contains("enrolled, but could not write the new identity") })

        try agent.unblockChainFile()
        agent.clock.advance(to: agent.clock.deadlines[0])
        try await enrollment.value
        #expect(try agent.onDisk().serialHex == agent.state.current.serial)
        #expect(agent.ca.enrollCalls == 1)
    }

    enum RevokedBy: Sendable, CustomTestStringConvertible {
        case signedCRL, caRefusal
        var testDescription: String { self == .signedCRL ? "listed in the signed CRL" : "refused by the CA" }
    }

    @Test func aValidIdentityOnDiskIsReusedAndAnExpiredOneReplacedWithTheToken() async throws {
        let agent = try await KeeperHarness()
        let first = try agent.onDisk()
        let again = agent.makeKeeper()
        try await again.obtainInitialIdentity()
        #expect(agent.ca.enrollCalls == 1, "no token spent on a restart")
        #expect(agent.state.current.serial == first.serialHex)

        agent.clock.advance(to: first.notAfter)
        try await agent.ca.token(Self.web).write(toFile: agent.tokenPath, atomically: true, encoding: .utf8)
        try await agent.makeKeeper().obtainInitialIdentity()
        #expect(agent.ca.enrollCalls == 2)
        #expect(try agent.onDisk().serialHex != first.serialHex)
        #expect(agent.log.lines.contains { $0.contains("certificate on disk has expired") })
    }
}

/// An agent's identity keeper on a temporary directory, the in-process CA and a manual clock.
final class KeeperHarness: Sendable {
    let clock = ManualAgentClock()
    let ca: InProcessCA
    let root: String
    let configuration: AgentConfiguration
    let state = AgentState()
    let log = CollectedLog()
    let keeper: IdentityKeeper
    /// Serials in the order the listener was told to serve them.
    let served = Mutex<[String]>([])
    let revocations: RevokedSerials
    let fillsOnNextAnswer = OneShot()
    var tokenPath: String { root + "/token" }
    var files: IdentityFiles { IdentityFiles(directory: root + "/out") }

    init(enroll: Bool = true) async throws {
        ca = try InProcessCA(clock: clock)
        revocations = RevokedSerials(ca: ca)
        root = FileManager.default.temporaryDirectory.appendingPathComponent("keeper-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try ca.material.root.pem.write(toFile: root + "/bundle.pem", atomically: true, encoding: .utf8)
        configuration = AgentConfiguration(caAddress: HostPort(host: "127.0.0.1", port: 1), caBundlePath: root + "/bundle.pem",
                                           tokenFilePath: root + "/token", outDirectory: root + "/out", certificateTTL: .seconds(60),
                                           renewFraction: 0.5, jitterFraction: 0, maximumBackoff: .seconds(4))
        try await ca.token(IdentityKeeperTests.web).write(toFile: root + "/token", atomically: true, encoding: .utf8)
        let fills = fillsOnNextAnswer, chain = IdentityFiles(directory: root + "/out").chain
        let calls = AfterEachAnswer(ca: ca) {
            guard fills.take() else { return }
            try? FileManager.default.removeItem(atPath: chain)
            try FileManager.default.createDirectory(atPath: chain, withIntermediateDirectories: false)
        }
        keeper = IdentityKeeper(configuration: configuration, files: IdentityFiles(directory: root + "/out"), ca: calls,
                                hooks: FileChangeHooks(command: nil, signal: nil, pidFile: nil, logger: log.logger),
                                revocations: revocations, clock: clock, state: state, logger: log.logger,
                                onIdentity: { _ in })
        if enroll { try await keeper.obtainInitialIdentity() }
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    /// Another keeper on the same directory, as after a restart.
    func makeKeeper() -> IdentityKeeper {
        IdentityKeeper(configuration: configuration, files: files, ca: ca,
                       hooks: FileChangeHooks(command: nil, signal: nil, pidFile: nil, logger: log.logger),
                       revocations: revocations, clock: clock, state: state, logger: log.logger,
                       onIdentity: { _ in })
    }

    /// Starts the renewal loop and returns once it waits for its first renewal time.
    func startRotating() async throws -> Task<Void, any Error> {
        let rotation = Task {
            try await keeper.rotateForever(reloadListener: {
                let leaf = try self.files.load().leaf
                self.served.withLock { $0.append(leaf.serialHex) }
                return leaf
            })
        }
        try await clock.waitForSleepers()
        return rotation
    }

    func onDisk() throws -> X509Certificate { try X509Certificate(pem: String(contentsOfFile: files.certificate, encoding: .utf8)) }

    /// Once the CA's next answer has arrived, a directory takes chain.pem's place: the agent's
    /// writes of its set fail (as on a full or read-only disk, which root cannot simulate with
    /// file modes) and replace nothing, until `unblockChainFile`.
    func diskFillsOnNextAnswer() { fillsOnNextAnswer.arm() }

    func unblockChainFile() throws { try FileManager.default.removeItem(atPath: files.chain) }

    /// Polls (real time, briefly) until the agent has done what the last move of the clock set off.
    func waitFor(_ condition: @Sendable () -> Bool) async throws {
        let start = ContinuousClock.now
        while !condition() {
            guard ContinuousClock.now - start < .seconds(10) else { throw ClockWaitTimedOut(description: "condition not met; log: \(log.lines)") }
            try await Task.sleep(for: .milliseconds(1))
        }
    }
}

/// Armed by one side, taken (once) by the other.
final class OneShot: Sendable {
    private let armed = Mutex(false)
    func arm() { armed.withLock { $0 = true } }
    func take() -> Bool { armed.withLock { armed in defer { armed = false }; return armed } }
}

/// The CA's calls, then `then` once each answer has arrived.
struct AfterEachAnswer: CertificateAuthorityCalls {
    let ca: InProcessCA
    let then: @Sendable () throws -> Void
    func enroll(token: String, key: PrivateKey, ttl: Int64) async throws -> CAAnswer {
        let answer = try await ca.enroll(token: token, key: key, ttl: ttl)
        try then()
        return answer
    }
    func renew(current: IdentityFiles, newKey: PrivateKey, ttl: Int64) async throws -> CAAnswer {
        let answer = try await ca.renew(current: current, newKey: newKey, ttl: ttl)
        try then()
        return answer
    }
}

/// Serials the agent's verified CRL lists; `confirmRevoked` fetches the CA's revocations, as the
/// agent fetches its signed CRL.
final class RevokedSerials: RevocationStatus {
    private let serials = Mutex<Set<String>>([])
    let ca: InProcessCA
    init(ca: InProcessCA) { self.ca = ca }
    func insert(_ serial: String) { serials.withLock { _ = $0.insert(serial) } }
    func isRevoked(_ serial: String) -> Bool { serials.withLock { $0.contains(serial) } }
    var heldNumber: Int64? { 1 }
    func confirmRevoked(_ serial: String) async -> Bool {
        for record in (try? await ca.authority.revocations(afterSequence: 0)) ?? [] { insert(record.serial) }
        return isRevoked(serial)
    }
}

/// What the agent believes of a CRL, on the test's clock: only a fresh CRL signed by its CA,
/// never an older one, never the same number with other contents.
@Suite("Agent CRL following")
struct RevocationFollowerTests {
    @Test func aCRLIsHeldOnlyWhileFreshAndNeverReplacedByAnOlderOne() async throws {
        let agent = try await KeeperHarness()
        let follower = RevocationFollower(files: agent.files, address: agent.configuration.caAddress, bundlePath: agent.configuration.caBundlePath,
                                          server: CAServerIdentity(configured: nil, files: agent.files), refreshInterval: .seconds(60),
                                          rpcTimeout: .seconds(1), clock: agent.clock, logger: agent.log.logger)
        let served = try agent.onDisk().serialHex
        let first = try await agent.ca.authority.currentCRL()
        #expect(try await follower.take(first.der))
        #expect(!follower.isRevoked(served))

        // The CA revokes; its next CRL is newer, lists the serial, and is kept on disk.
        try await agent.ca.revoke(served)
        agent.clock.advance(by: 1)
        let second = try await agent.ca.authority.currentCRL()
        #expect(try await follower.take(second.der))
        #expect(follower.isRevoked(served) && follower.heldNumber == second.number)
        #expect(FileManager.default.contents(atPath: follower.crlPath) == Data(second.der))
        #expect(try await follower.take(second.der) == false, "the same CRL again changes nothing")

        // An older CRL, one of another CA, and the held one past its nextUpdate are refused; the
        // revocation stays known and crl.der stays as it was.
        await #expect(throws: IdentityRejected.self) { try await follower.take(first.der) }
        let stranger = try await KeeperHarness()
        await #expect(throws: IdentityRejected.self) { try await follower.take(try await stranger.ca.authority.currentCRL().der) }
        agent.clock.advance(to: Date(timeIntervalSince1970: second.nextUpdate))
        await #expect(throws: IdentityRejected.self) { try await follower.take(second.der) }
        #expect(follower.isRevoked(served))
        #expect(FileManager.default.contents(atPath: follower.crlPath) == Data(second.der))
    }
}
