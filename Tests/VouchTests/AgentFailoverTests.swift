import Foundation
import GRPCCore
import Synchronization
import Testing
import VouchAPI
@testable import VouchAgent
import VouchCrypto
import VouchTLS

/// An agent with several CA replicas (`--ca A,B,C`), in process: which replica each call goes
/// to, which failures move on and which are the CA's final word, and the revocation stream
/// resuming by sequence on the next replica.
@Suite("Agent CA failover")
struct AgentFailoverTests {
    static let a = HostPort(host: "10.0.0.1", port: 8443)
    static let b = HostPort(host: "10.0.0.2", port: 8443)
    static let c = HostPort(host: "10.0.0.3", port: 8443)

    static let unavailable = RPCError(code: .unavailable, message: "connection refused")

    /// Three scripted replicas behind `FailoverCalls`.
    final class Replicas: Sendable {
        let log = CollectedLog()
        let state = AgentState()
        let scripted: [String: ScriptedReplica]
        let called: CallLog
        let replicas: CAReplicas
        let calls: FailoverCalls

        init(_ addresses: [HostPort] = [a, b, c]) throws {
            let called = CallLog()
            self.called = called
            scripted = Dictionary(uniqueKeysWithValues: addresses.map { address in
                ("\(address)", ScriptedReplica(address: address) { called.addresses.withLock { $0.append(address) } })
            })
            replicas = CAReplicas(try CAAddressList(addresses), logger: log.logger, state: state)
            calls = FailoverCalls(replicas: replicas) { [scripted] in scripted["\($0)"]! }
        }

        subscript(_ address: HostPort) -> ScriptedReplica { scripted["\(address)"]! }

        /// Renews once; which replica answered.
        func renew() async throws -> String {
            let answer = try await calls.renew(current: IdentityFiles(directory: "/nonexistent"), newKey: try PrivateKey(generating: .p256), ttl: 60)
            return String(decoding: answer.leaf, as: UTF8.self)
        }

        /// The addresses called since the last look, in order.
        func takeCalled() -> [HostPort] {
            called.addresses.withLock { order in
                defer { order.removeAll() }
                return order
            }
        }
    }

    @Test func callsStayWithTheReplicaThatLastAnsweredAndMoveOnInListOrder() async throws {
        let replicas = try Replicas()
        #expect(try await replicas.renew() == "\(Self.a)")
        #expect(replicas.takeCalled() == [Self.a])

        replicas[Self.a].failure = Self.unavailable
        #expect(try await replicas.renew() == "\(Self.b)")
        #expect(replicas.takeCalled() == [Self.a, Self.b])
        #expect(try await replicas.renew() == "\(Self.b)", "sticky: the dead replica costs only the call that found it dead")
        #expect(try await replicas.renew() == "\(Self.b)")
        #expect(replicas.takeCalled() == [Self.b, Self.b])

        // B dies too while A is back: C is next after B, then A after C.
        replicas[Self.a].failure = nil
        replicas[Self.b].failure = RPCError(code: .deadlineExceeded, message: "timed out")
        replicas[Self.c].failure = Self.unavailable
        #expect(try await replicas.renew() == "\(Self.a)")
        #expect(replicas.takeCalled() == [Self.b, Self.c, Self.a])
        #expect(replicas.replicas.active == Self.a && replicas.state.current.caAddress == "\(Self.a)")

        let changes = replicas.log.lines.filter { $0.contains("CA replica changed") }
        #expect(changes == ["info CA replica changed from=\(Self.a) to=\(Self.b)", "info CA replica changed from=\(Self.b) to=\(Self.a)"])
        #expect(replicas.log.lines.filter { $0.hasPrefix("notice CA replica did not answer; trying the next") }.count == 3)
    }

    static let movesOn: [RPCError] = [
        unavailable,
        RPCError(code: .unavailable, message: "The TCP connection was dropped unexpectedly."),
        RPCError(code: .deadlineExceeded, message: "Timed out waiting for an answer"),
        RPCError(code: .internalError, message: "internal error"),
        RPCError(code: .unknown, message: "stream reset"),
        RPCError(code: .cancelled, message: "the server cancelled the RPC"),
    ]

    @Test(arguments: movesOn)
    func aFailureWithoutAnAnswerMovesToTheNextReplica(failure: RPCError) async throws {
        let replicas = try Replicas()
        replicas[Self.a].failure = failure
        #expect(try await replicas.renew() == "\(Self.b)")
        #expect(replicas.takeCalled() == [Self.a, Self.b])
    }

    static let final: [RPCError] = [
        RPCError(code: .failedPrecondition, message: "certificate is revoked",
                 metadata: [RefusalReason.trailer: .string(RefusalReason.certificateRevoked.rawValue)]),
        RPCError(code: .unauthenticated, message: "enrollment token abc was already used"),
        RPCError(code: .permissionDenied, message: "not an admin"),
        RPCError(code: .invalidArgument, message: "profile web accepts keys p256"),
        RPCError(code: .notFound, message: "no such certificate"),
        RPCError(code: .resourceExhausted, message: "too many failed enrollment attempts for this token from this address; retry later"),
        RPCError(code: .alreadyExists, message: "exists"),
    ]

    @Test(arguments: final)
    func theCAsAnswerIsFinalAndReachesTheKeeperUnchanged(refusal: RPCError) async throws {
        let replicas = try Replicas()
        replicas[Self.a].failure = refusal
        let thrown = await #expect(throws: RPCError.self) { try await replicas.renew() }
        #expect(thrown?.code == refusal.code && thrown?.message == refusal.message)
        #expect(thrown.flatMap { RefusalReason(of: $0) } == RefusalReason(of: refusal), "the revoked trailer survives")
        #expect(replicas.takeCalled() == [Self.a], "no other replica is asked")

        // The refusing replica answered: it stays the one to ask first.
        replicas[Self.a].failure = nil
        #expect(try await replicas.renew() == "\(Self.a)")
    }

    @Test func anAnswerTheAgentRejectsIsNotAskedAgainElsewhere() async throws {
        let replicas = try Replicas()
        replicas[Self.a].failure = IdentityRejected("answer larger than 1 MiB")
        await #expect(throws: IdentityRejected.self) { try await replicas.renew() }
        #expect(replicas.takeCalled() == [Self.a])
    }

    @Test func aReplicaThatFailsTheIdentityCheckIsSkippedLoudly() async throws {
        let replicas = try Replicas()
        replicas[Self.a].failure = RPCError(code: .unavailable, message: "refusing the server: certificate has SPIFFE ID "
                                            + "spiffe://example.org/svc/impostor, expected spiffe://example.org/vouch/server")
        #expect(try await replicas.renew() == "\(Self.b)")
        #expect(replicas.log.lines.contains {
            $0.hasPrefix("error CA replica failed the server identity check") && $0.contains("address=\(Self.a)") && $0.contains("impostor")
        }, "\(replicas.log.lines)")
    }

    @Test func whenEveryReplicaFailsOneErrorNamesEachAddressAndTheNextCallStartsWhereItDid() async throws {
        let replicas = try Replicas()
        replicas[Self.a].failure = Self.unavailable
        replicas[Self.b].failure = RPCError(code: .deadlineExceeded, message: "Timed out waiting for an answer")
        replicas[Self.c].failure = RPCError(code: .internalError, message: "internal error")
        let thrown = await #expect(throws: CAReplicasUnreachable.self) { try await replicas.renew() }
        #expect(thrown?.attempts.map(\.address) == [Self.a, Self.b, Self.c])
        #expect(describe(thrown!) == "no CA replica answered (3 tried): 10.0.0.1:8443: server unavailable (connection refused); "
            + "10.0.0.2:8443: deadlineExceeded: Timed out waiting for an answer; 10.0.0.3:8443: internalError: internal error")
        #expect(replicas.takeCalled() == [Self.a, Self.b, Self.c], "each replica once per call; the keeper's backoff comes next")
        #expect(replicas.replicas.active == Self.a)
    }

    @Test func oneAddressBehavesAsBeforeReplicas() async throws {
        let replicas = try Replicas([Self.a])
        replicas[Self.a].failure = Self.unavailable
        let thrown = await #expect(throws: RPCError.self) { try await replicas.renew() }
        #expect(thrown?.code == .unavailable && thrown?.message == "connection refused", "the error as it came")
        #expect(replicas.log.lines.isEmpty)
    }

    // MARK: The keeper over replicas

    /// The real keeper and authority core behind two replicas that can each be taken down: the
    /// token goes to the replica that answers, renewals stay there, and one renewal that finds
    /// every replica down is one failure with one backoff, not one per replica.
    @Test func theKeeperEnrollsAndRenewsThroughTheLiveReplicaAndBacksOffOnceWhenAllAreDown() async throws {
        let agent = try await KeeperHarness(enroll: false)
        let viewA = ReplicaView(agent.ca), viewB = ReplicaView(agent.ca)
        let replicas = CAReplicas(try CAAddressList([Self.a, Self.b]), logger: agent.log.logger, state: agent.state)
        let keeper = IdentityKeeper(
            configuration: agent.configuration, files: agent.files,
            ca: FailoverCalls(replicas: replicas) { $0 == Self.a ? viewA : viewB },
            hooks: FileChangeHooks(command: nil, signal: nil, pidFile: nil, logger: agent.log.logger),
            revocations: agent.revocations, clock: agent.clock, state: agent.state, logger: agent.log.logger, onIdentity: { _ in })
        viewA.isDown = true
        try await keeper.obtainInitialIdentity()
        #expect(viewA.calls == 1 && viewB.calls == 1 && agent.ca.enrollCalls == 1, "the token is spent once, at B")
        #expect(agent.state.current.caAddress == "\(Self.b)")

        let rotation = Task { try await keeper.rotateForever(reloadListener: { try agent.files.load().leaf }) }
        defer { rotation.cancel() }
        try await agent.clock.waitForSleepers()
        agent.clock.advance(to: agent.clock.deadlines[0])
        try await agent.waitFor { agent.state.current.rotations == 1 }
        #expect(viewA.calls == 1 && viewB.calls == 2, "renewed at B without asking A again")

        // Both down: one failed renewal, after asking each once, then the keeper's first backoff.
        viewB.isDown = true
        try await agent.clock.waitForSleepers()
        agent.clock.advance(to: agent.clock.deadlines[0])
        try await agent.waitFor { agent.state.current.failures == 1 }
        try await agent.clock.waitForSleepers()
        #expect(viewA.calls == 2 && viewB.calls == 3)
        #expect(agent.state.current.lastError.hasPrefix("no CA replica answered (2 tried): \(Self.b): server unavailable"))
        let retry = agent.clock.deadlines[0].timeIntervalSince(agent.clock.now)
        #expect(retry >= 0.8 && retry <= 1.2, "the first backoff (1 s ±20%), once for both replicas")

        // A is back: the retry asks B (the last to answer), then A, and renews.
        viewA.isDown = false
        agent.clock.advance(to: agent.clock.deadlines[0])
        try await agent.waitFor { agent.state.current.rotations == 2 }
        #expect(viewA.calls == 3 && viewB.calls == 4 && agent.state.current.failures == 1)
        #expect(agent.state.current.caAddress == "\(Self.a)")
    }

    // MARK: Revocations

    @Test func theRevocationStreamResumesOnTheNextReplicaAfterTheLastSequenceSeen() async throws {
        let log = CollectedLog(), clock = ManualAgentClock()
        let source = ScriptedRevocations(events: 6)
        source.breaksAfter["\(Self.a)"] = 3  // A delivers 1...3, then its connection drops
        let follower = try follower(source: source, log: log, clock: clock)
        let watching = Task { try await follower.watchForever(schedule: Self.schedule) }
        defer { watching.cancel() }
        try await waitFor { follower.lastSequence == 6 && source.opened.withLock { $0 } == [Self.a, Self.b] }

        #expect(source.requests.withLock { $0 } == ["\(Self.a) after 0", "\(Self.b) after 3"])
        let hints = log.lines.filter { $0.contains("revocation hint received") }
        #expect(hints.compactMap { $0.split(separator: " ").first { $0.hasPrefix("sequence=") } } == (1...6).map { "sequence=\($0)" },
                "each revocation once, none lost: \(hints)")
        #expect(log.lines.contains { $0.hasPrefix("notice revocation stream moves to the next CA replica")
                && $0.contains("after_sequence=3") && $0.contains("from=\(Self.a)") && $0.contains("to=\(Self.b)") })
        #expect(log.lines.contains("info CA replica changed from=\(Self.a) to=\(Self.b)"))
        #expect(clock.deadlines.isEmpty, "no backoff while another replica answers")
    }

    @Test func theStreamBacksOffOnlyOnceEveryReplicaFailedAndStaysOnARefusingOne() async throws {
        let log = CollectedLog(), clock = ManualAgentClock()
        let source = ScriptedRevocations(events: 0)
        source.refuses["\(Self.a)"] = Self.unavailable
        source.refuses["\(Self.b)"] = Self.unavailable
        let follower = try follower(source: source, log: log, clock: clock)
        let watching = Task { try await follower.watchForever(schedule: Self.schedule) }
        defer { watching.cancel() }
        try await clock.waitForSleepers()
        #expect(source.requests.withLock { $0 } == ["\(Self.a) after 0", "\(Self.b) after 0"], "each once, then the backoff")
        #expect(log.lines.contains { $0.hasPrefix("notice revocation stream down; CRL refresh covers meanwhile") })

        // After the backoff, A refuses (the CA's word): the stream backs off again on A, not on B.
        source.refuses["\(Self.a)"] = RPCError(code: .permissionDenied, message: "certificate is revoked")
        clock.advance(by: 10)
        try await waitFor { source.requests.withLock { $0 }.count == 3 }
        try await clock.waitForSleepers()
        clock.advance(by: 10)
        try await waitFor { source.requests.withLock { $0 }.count == 4 }
        #expect(source.requests.withLock { $0 }.suffix(2) == ["\(Self.a) after 0", "\(Self.a) after 0"])
    }

    @Test func replicasThatDropEveryStreamAtOnceAreCycledOnlyOncePerBackoff() async throws {
        let log = CollectedLog(), clock = ManualAgentClock()
        let source = ScriptedRevocations(events: 0)
        source.drops = ["\(Self.a)", "\(Self.b)"]
        let follower = try follower(source: source, log: log, clock: clock)
        let watching = Task { try await follower.watchForever(schedule: Self.schedule) }
        defer { watching.cancel() }
        for round in 1...3 {
            try await clock.waitForSleepers()
            #expect(source.requests.withLock { $0 }.count == 2 * round, "each replica once per round, then a backoff")
            let delay = clock.deadlines[0].timeIntervalSince(clock.now), expected = pow(2, Double(round - 1))
            #expect(delay >= expected * 0.8 && delay <= expected * 1.2, "a growing backoff (1, 2, 4 s ±20%): \(delay) in round \(round)")
            clock.advance(to: clock.deadlines[0])
        }
    }

    @Test func theCRLIsFetchedFromTheNextReplicaWhenOneIsDown() async throws {
        let agent = try await KeeperHarness()
        let source = ScriptedRevocations(events: 0)
        source.refuses["\(Self.a)"] = Self.unavailable
        source.crl = try await agent.ca.authority.currentCRL().der
        let replicas = CAReplicas(try CAAddressList([Self.a, Self.b]), logger: agent.log.logger)
        let follower = RevocationFollower(files: agent.files, replicas: replicas, source: source, refreshInterval: .seconds(60),
                                          clock: agent.clock, logger: agent.log.logger)
        try await follower.refreshCRL()
        #expect(follower.heldNumber == (try await agent.ca.authority.currentCRL().number))
        #expect(source.crlRequests.withLock { $0 } == [Self.a, Self.b])
        #expect(replicas.active == Self.b)
    }

    static let schedule = RenewalSchedule(renewFraction: 0.5, jitterFraction: 0, minimumBackoff: 1, maximumBackoff: 4)

    private func follower(source: ScriptedRevocations, log: CollectedLog, clock: ManualAgentClock) throws -> RevocationFollower {
        RevocationFollower(files: IdentityFiles(directory: "/nonexistent"), replicas: CAReplicas(try CAAddressList([Self.a, Self.b]), logger: log.logger),
                           source: source, refreshInterval: .seconds(60), clock: clock, logger: log.logger)
    }

    private func waitFor(_ condition: @Sendable () -> Bool) async throws {
        let start = ContinuousClock.now
        while !condition() {
            guard ContinuousClock.now - start < .seconds(10) else { throw ClockWaitTimedOut(description: "condition not met") }
            try await Task.sleep(for: .milliseconds(1))
        }
    }
}

/// One replica of the in-process CA: the same authority, its own outage and call count.
final class ReplicaView: CertificateAuthorityCalls {
    let ca: InProcessCA
    private let state = Mutex((down: false, calls: 0))

    init(_ ca: InProcessCA) { self.ca = ca }

    var isDown: Bool {
        get { state.withLock { $0.down } }
        set { state.withLock { $0.down = newValue } }
    }

    var calls: Int { state.withLock { $0.calls } }

    private func reach() throws {
        let down = state.withLock {
            $0.calls += 1
            return $0.down
        }
        if down { throw RPCError(code: .unavailable, message: "connection refused") }
    }

    func enroll(token: String, key: PrivateKey, ttl: Int64) async throws -> CAAnswer {
        try reach()
        return try await ca.enroll(token: token, key: key, ttl: ttl)
    }

    func renew(current: IdentityFiles, newKey: PrivateKey, ttl: Int64) async throws -> CAAnswer {
        try reach()
        return try await ca.renew(current: current, newKey: newKey, ttl: ttl)
    }
}

/// Calls across replicas, in order.
final class CallLog: Sendable {
    let addresses = Mutex<[HostPort]>([])
}

/// One replica's Enroll/Renew: answers with its own address as the leaf, or fails as told.
final class ScriptedReplica: CertificateAuthorityCalls {
    let address: HostPort
    /// Told of each call, so a test sees the order across replicas.
    let onCall: @Sendable () -> Void
    private let failing = Mutex<(any Error)?>(nil)

    init(address: HostPort, onCall: @escaping @Sendable () -> Void) {
        self.address = address
        self.onCall = onCall
    }

    var failure: (any Error)? {
        get { failing.withLock { $0 } }
        set { failing.withLock { $0 = newValue } }
    }

    private func answer() throws -> CAAnswer {
        onCall()
        if let failure { throw failure }
        return CAAnswer(leaf: Array("\(address)".utf8), chain: [], roots: [])
    }

    func enroll(token: String, key: PrivateKey, ttl: Int64) async throws -> CAAnswer { try answer() }
    func renew(current: IdentityFiles, newKey: PrivateKey, ttl: Int64) async throws -> CAAnswer { try answer() }
}

/// Replicas of one CA's revocation log (sequences 1...events): each serves the events after the
/// sequence asked, then keeps the stream open, unless told to break after a sequence or refuse.
final class ScriptedRevocations: RevocationSource {
    let events: Int64
    private let script = Mutex((breaksAfter: [String: Int64](), refuses: [String: RPCError](), drops: Set<String>(), crl: [UInt8]()))
    let requests = Mutex<[String]>([])
    let opened = Mutex<[HostPort]>([])
    let crlRequests = Mutex<[HostPort]>([])

    init(events: Int64) { self.events = events }

    var breaksAfter: [String: Int64] {
        get { script.withLock { $0.breaksAfter } }
        set { script.withLock { $0.breaksAfter = newValue } }
    }

    var refuses: [String: RPCError] {
        get { script.withLock { $0.refuses } }
        set { script.withLock { $0.refuses = newValue } }
    }

    /// Replicas that accept a stream and drop it at once.
    var drops: Set<String> {
        get { script.withLock { $0.drops } }
        set { script.withLock { $0.drops = newValue } }
    }

    var crl: [UInt8] {
        get { script.withLock { $0.crl } }
        set { script.withLock { $0.crl = newValue } }
    }

    func crl(from address: HostPort) async throws -> [UInt8] {
        crlRequests.withLock { $0.append(address) }
        if let refusal = refuses["\(address)"] { throw refusal }
        return crl
    }

    func watch(_ address: HostPort, afterSequence: Int64, onOpen: @escaping @Sendable () -> Void,
               onEvent: @escaping @Sendable (Vouch_V1_RevocationEvent) -> Void) async throws {
        requests.withLock { $0.append("\(address) after \(afterSequence)") }
        if let refusal = refuses["\(address)"] { throw refusal }
        opened.withLock { $0.append(address) }
        onOpen()
        if drops.contains("\(address)") { throw RPCError(code: .unavailable, message: "Stream unexpectedly closed.") }
        let last = breaksAfter["\(address)"] ?? events
        for sequence in stride(from: afterSequence + 1, through: last, by: 1) {
            var event = Vouch_V1_RevocationEvent()
            event.sequence = sequence
            event.serial = String(format: "%02x", sequence)
            event.spiffeID = "spiffe://example.org/svc/\(sequence)"
            onEvent(event)
        }
        if last < events { throw RPCError(code: .unavailable, message: "The TCP connection was dropped unexpectedly.") }
        while true { try await Task.sleep(for: .seconds(60)) }
    }
}
