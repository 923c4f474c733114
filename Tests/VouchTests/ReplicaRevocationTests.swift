import Foundation
import GRPCCore
import Logging
import Synchronization
import Testing
@testable import VouchAPI
@testable import VouchAuthority
import VouchCrypto
@testable import VouchPostgresStore

/// CA replicas sharing one PostgreSQL database: a revocation committed through one reaches every
/// other's registry (handshakes, open connections, watchers, CRL) within a second, through
/// LISTEN/NOTIFY, and none is missed when the listening session is lost.
@Suite("Replica revocations")
struct ReplicaRevocationTests {
    static let admin = Caller(credential: .certificate(spiffeID: "spiffe://example.org/vouch/admin", serial: "01"), peer: "ipv4:10.0.0.9:1")

    /// The registry alone: a revocation committed here is refused at once, but watchers get it only
    /// from a read of the store, after another replica's earlier one, each once.
    @Test func theRegistryTellsWatchersInCommitOrderOnce() async throws {
        let registry = RevocationRegistry()
        let watcher = Watcher(registry.watch())
        registry.add([Self.record(7, "a7")])
        #expect(registry.isRevoked(serial: "a7"))
        #expect(registry.latestSequence == 7 && registry.readThrough == 0)
        registry.addRead([Self.record(7, "a7"), Self.record(6, "a6")])
        registry.addRead([Self.record(6, "a6"), Self.record(7, "a7")])
        registry.add([Self.record(7, "a7")])
        registry.addRead([Self.record(8, "a8")])
        #expect(try await watcher.sequences(count: 3) == [6, 7, 8])
        #expect(registry.isRevoked(serial: "a6") && registry.readThrough == 8 && registry.count == 3)
    }

    @Test func aRevocationThroughAReachesBWithinASecond() async throws {
        let (a, b) = try await Replica.pair()
        let serials = try await a.issue(2)
        try await Replica.following(a, b)
        let watcher = Watcher(b.authority.revocations.watch())
        let clock = ContinuousClock(), start = clock.now
        let revoked = try await a.authority.revoke(serial: serials[0], reason: 1, caller: Self.admin)
        let committed = clock.now
        #expect(try await watcher.reached(count: 1))
        let arrived = clock.now
        #expect(try await watcher.sequences(count: 1) == [revoked.sequence])
        print("replica revocation latency: \(arrived - committed) after A's revoke returned (\(arrived - start) from the call)")
        #expect(arrived - committed < .seconds(1))
        #expect(b.authority.revocations.isRevoked(serial: serials[0]))
        #expect(await refusal { try b.authority.checkStanding(Caller(credential: .certificate(
            spiffeID: "spiffe://example.org/svc/web", serial: serials[0]), peer: "ipv4:10.0.0.1:5000")) } == .failedPrecondition)
        let crl = try CertificateRevocationList(der: try await b.authority.currentCRL().der)
        #expect(crl.entries.map { SerialNumber.hex($0.serial) } == [serials[0]])
        // Once: the next one follows it with nothing in between.
        let next = try await a.authority.revoke(serial: serials[1], reason: 1, caller: Self.admin)
        #expect(try await watcher.sequences(count: 2) == [revoked.sequence, next.sequence])
        await Replica.stop(a, b)
    }

    /// An agent told of a revocation by one replica's stream may fetch the CRL from another that
    /// has not heard of it: that replica's CRL still lists it (it reads the store first).
    @Test func aReplicaThatHasNotHeardOfARevocationStillListsItInItsCRL() async throws {
        let (a, b) = try await Replica.pair()  // no follower runs: B hears of nothing by itself
        let serials = try await a.issue(1)
        let before = try CertificateRevocationList(der: try await b.authority.currentCRL().der)
        #expect(before.entries.isEmpty)
        _ = try await a.authority.revoke(serial: serials[0], reason: 1, caller: Self.admin)
        let after = try CertificateRevocationList(der: try await b.authority.currentCRL().der)
        #expect(after.entries.map { SerialNumber.hex($0.serial) } == serials)
        #expect((after.number ?? 0) > (before.number ?? 0))
        await Replica.stop(a, b)
    }

    /// A listening session dropped as soon as it listens (a proxy, a script ending it) is reopened
    /// at a growing interval, not every 200 ms, and the outage is not logged on every cycle.
    @Test func aSessionDroppedAsSoonAsItListensIsRetriedWithAGrowingBackoff() async throws {
        let (a, b) = try await Replica.pair()
        let dropping = DroppingFeed()
        let follower = SharedRevocationFollower(authority: b.authority, feed: dropping, logger: b.log.logger,
                                                safetyInterval: .seconds(60), maximumRetry: .seconds(5))
        let running = Task { await follower.run() }
        try await Task.sleep(for: .seconds(3))
        running.cancel()
        await running.value
        // 0.2 + 0.4 + 0.8 + 1.6 s: five sessions in three seconds; without the backoff, fifteen.
        #expect((3...6).contains(dropping.sessions), "\(dropping.sessions) sessions in 3 s")
        await Replica.stop(a, b)
    }

    @Test func aStormOnBothReplicasEndsWithTheSameSetEachToldOnce() async throws {
        let (a, b) = try await Replica.pair()
        let serials = try await a.issue(50)
        try await Replica.following(a, b)
        let watchers = [Watcher(a.authority.revocations.watch()), Watcher(b.authority.revocations.watch())]
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, serial) in serials.enumerated() {
                let replica = index % 2 == 0 ? a : b
                group.addTask { _ = try await replica.authority.revoke(serial: serial, reason: 1, caller: Self.admin) }
            }
            try await group.waitForAll()
        }
        let stored = try await a.store.revocations(afterSequence: 0).map(\.sequence)
        #expect(stored.count == 50)
        for watcher in watchers {
            #expect(try await watcher.sequences(count: 50) == stored, "each once, in commit order")
        }
        for replica in [a, b] {
            #expect(replica.authority.revocations.count == 50)
            #expect(serials.allSatisfy(replica.authority.revocations.isRevoked(serial:)))
            #expect(replica.authority.revocations.readThrough == stored.last)
        }
        await Replica.stop(a, b)
    }

    /// B's listening session is killed and cannot come back for a while (its reconnections are
    /// refused); the revocations committed meanwhile arrive with the first read after it reconnects.
    /// One line tells of the outage, one of its end.
    @Test func revocationsMissedWhileTheListenerIsDownArriveAfterItReconnects() async throws {
        let (a, b) = try await Replica.pair()
        let serials = try await a.issue(6)
        let gate = GatedFeed(b.store)
        try await Replica.following(a, b, feeds: [a.store, gate], maximumRetry: .milliseconds(800))
        let watcher = Watcher(b.authority.revocations.watch())
        var sequences = [try await a.authority.revoke(serial: serials[0], reason: 1, caller: Self.admin).sequence]
        gate.refuse(true)
        try TestPostgres.shared.psql(a.database, """
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE datname = current_database() AND application_name = '\(PostgresAuthorityStore.listenerName)'
            """)
        #expect(try await Self.eventually { b.log.lines.contains { $0.contains("not listening for revocations") } })
        for serial in serials.dropFirst() {
            sequences.append(try await a.authority.revoke(serial: serial, reason: 1, caller: Self.admin).sequence)
        }
        #expect(!b.authority.revocations.isRevoked(serial: serials[5]), "no session of B listens: nothing was announced to B")
        // Long enough for several refused reconnections, each of which must stay out of the log.
        try await Task.sleep(for: .seconds(1))
        gate.refuse(false)
        let reopened = ContinuousClock.now
        #expect(try await watcher.sequences(count: 6) == sequences)
        print("replica revocations after reconnecting: \(ContinuousClock.now - reopened) after the database took the listener again")
        #expect(serials.allSatisfy(b.authority.revocations.isRevoked(serial:)))
        let lines = b.log.lines
        #expect(lines.filter { $0.contains("not listening for revocations") }.count == 1, "\(lines)")
        #expect(lines.filter { $0.contains("listening for revocations again") }.count == 1, "\(lines)")
        #expect(gate.refused > 1, "several reconnections were refused")
        await Replica.stop(a, b)
    }

    /// The whole database goes down (a cluster of this test's own, stopped and started again): each
    /// replica says once that it stopped listening and once that it listens again, and a revocation
    /// through A as soon as A can write again reaches B within a second of B's next attempt.
    @Test func afterADatabaseOutageTheReplicasListenAgain() async throws {
        let cluster = "/tmp/vouch-replica-outage-\(getpid())-\(UUID().uuidString.prefix(6))"
        let started = try execute("/bin/bash", [TestPostgres.script, "start", cluster, String(getpid())])
        #expect(started.status == 0, "\(started.stderr)")
        defer { _ = try? execute("/bin/bash", [TestPostgres.script, "stop", cluster]) }
        let parts = try #require(URLComponents(string: started.lastLine))
        let database: PostgresTestDatabase = (try #require(parts.host), try #require(parts.port), try #require(parts.user), "postgres")
        let material = try TestCA.material(now: Date())
        let a = try await Replica(database: database, material: material), b = try await Replica(database: database, material: material)
        let serials = try await a.issue(1)
        let maximumRetry = Duration.milliseconds(800)
        try await Replica.following(a, b, maximumRetry: maximumRetry)
        #expect(try execute("/bin/bash", [TestPostgres.script, "pause", cluster]).status == 0)
        #expect(try await Self.eventually { [a, b].allSatisfy { $0.log.lines.contains { $0.contains("not listening for revocations") } } })
        // Long enough for several failed reconnections, each of which must stay out of the log.
        try await Task.sleep(for: .seconds(1))
        #expect(try execute("/bin/bash", [TestPostgres.script, "resume", cluster]).status == 0)
        var revoked: RevocationRecord?
        while revoked == nil {
            revoked = try? await a.authority.revoke(serial: serials[0], reason: 1, caller: Self.admin)
            if revoked == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let committed = ContinuousClock.now
        #expect(try await Self.eventually { b.authority.revocations.isRevoked(serial: serials[0]) })
        print("replica revocation after a database outage: at B \(ContinuousClock.now - committed) after A could write again")
        #expect(ContinuousClock.now - committed < maximumRetry + .seconds(1))
        for replica in [a, b] {
            #expect(try await Self.eventually { replica.log.lines.contains { $0.contains("listening for revocations again") } })
            let lines = replica.log.lines
            #expect(lines.filter { $0.contains("not listening for revocations") }.count == 1, "\(lines)")
            #expect(lines.filter { $0.contains("listening for revocations again") }.count == 1, "\(lines)")
        }
        await Replica.stop(a, b)
    }

    /// A listening session whose server stops answering without closing the connection (its
    /// backend frozen with SIGSTOP, as behind a dead network path) is given up after the heartbeat
    /// and opened anew.
    @Test func aListeningSessionThatStopsAnsweringIsReplaced() async throws {
        let (a, b) = try await Replica.pair()
        let serials = try await a.issue(1)
        try await Replica.following(b, heartbeat: .milliseconds(300))
        let pid = try #require(pid_t(try TestPostgres.shared.psql(b.database, """
            SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = '\(PostgresAuthorityStore.listenerName)'
            """)))
        #expect(kill(pid, SIGSTOP) == 0)
        defer { kill(pid, SIGCONT) }
        #expect(try await Self.eventually { b.log.lines.contains { $0.contains("listening for revocations again") } }, "\(b.log.lines)")
        #expect(b.log.lines.contains { $0.contains("not listening for revocations") && $0.contains("no answer on the listening session") },
                "\(b.log.lines)")
        _ = try await a.authority.revoke(serial: serials[0], reason: 1, caller: Self.admin)
        #expect(try await Self.eventually(within: .seconds(1)) { b.authority.revocations.isRevoked(serial: serials[0]) })
        kill(pid, SIGCONT)
        await Replica.stop(a, b)
    }

    /// The same before the session listens: its server stops answering between its two LISTENs
    /// (B reaches the database through a proxy that freezes it there), which have no deadline of
    /// their own. It is given up after the heartbeat too, and the next session listens.
    @Test func aSessionThatStopsAnsweringBeforeItListensIsReplaced() async throws {
        let database = try await TestPostgres.shared.freshDatabase()
        let proxy = try FreezingProxy(upstreamPort: database.port, freezingOnce: "LISTEN \"\(PostgresAuthorityStore.issuerChannel)\"")
        defer { proxy.stop() }
        let material = try TestCA.material(now: Date())
        let a = try await Replica(database: database, material: material)
        let b = try await Replica(database: (database.host, proxy.port, database.user, database.database), material: material)
        let serials = try await a.issue(1)
        try await Replica.following(b, heartbeat: .milliseconds(300))
        #expect(proxy.froze)
        let lines = b.log.lines
        #expect(lines.contains { $0.contains("not listening for revocations") && $0.contains("no answer on the listening session") }, "\(lines)")
        #expect(lines.contains { $0.contains("listening for revocations again") }, "\(lines)")
        _ = try await a.authority.revoke(serial: serials[0], reason: 1, caller: Self.admin)
        #expect(try await Self.eventually(within: .seconds(1)) { b.authority.revocations.isRevoked(serial: serials[0]) })
        await Replica.stop(a, b)
    }

    /// An agent that saw sequence s on A and fails over to B, which has not read s yet, gets what
    /// follows s exactly once, in order, then what is revoked later.
    @Test func aWatcherFailingOverFromAGetsWhatFollowsItsSequenceOnce() async throws {
        let (a, b) = try await Replica.pair()
        let serials = try await a.issue(4)
        var sequences: [Int64] = []
        for serial in serials.prefix(3) {
            sequences.append(try await a.authority.revoke(serial: serial, reason: 1, caller: Self.admin).sequence)
        }
        #expect(b.authority.revocations.latestSequence == 0, "B has not read them")
        let events = Received(), seen = sequences[1]
        let watch = Task {
            try await withServerContextRPCCancellationHandle { cancellation in
                var request = Vouch_V1_WatchRevocationsRequest()
                request.afterSequence = seen
                try await CertificateAuthorityService(authority: b.authority).watchRevocations(
                    request: request, response: RPCWriter(wrapping: SequenceWriter(events)),
                    context: ServerContext(descriptor: MethodDescriptor(fullyQualifiedService: "vouch.v1.CertificateAuthority",
                                                                        method: "WatchRevocations"),
                                           remotePeer: "ipv4:10.0.0.1:5000", localPeer: "ipv4:127.0.0.1:8443", cancellation: cancellation))
            }
        }
        #expect(try await Self.eventually { events.sequences.count == 1 })
        try await Replica.following(b)
        sequences.append(try await a.authority.revoke(serial: serials[3], reason: 1, caller: Self.admin).sequence)
        #expect(try await Self.eventually { events.sequences.count == 2 })
        #expect(events.sequences == Array(sequences.suffix(2)))
        watch.cancel()
        await Replica.stop(a, b)
    }

    /// B's own revocation (sequence 2) is committed after A's (1), which B has not read: B's
    /// watchers get 1, then 2.
    @Test func aLocalRevocationDoesNotOvertakeAnEarlierOneOfAnotherReplica() async throws {
        let (a, b) = try await Replica.pair()
        let serials = try await a.issue(2)
        let watcher = Watcher(b.authority.revocations.watch())
        let first = try await a.authority.revoke(serial: serials[0], reason: 1, caller: Self.admin)
        let second = try await b.authority.revoke(serial: serials[1], reason: 1, caller: Self.admin)
        #expect(try await watcher.sequences(count: 2) == [first.sequence, second.sequence])
        await Replica.stop(a, b)
    }

    static func record(_ sequence: Int64, _ serial: String) -> RevocationRecord {
        RevocationRecord(sequence: sequence, serial: serial, reason: 1, revokedAt: Date(), spiffeID: "spiffe://example.org/svc/web",
                         notAfter: Date().addingTimeInterval(3600))
    }

    /// Polls `condition` every `interval` for up to `limit`.
    static func eventually(within limit: Duration = .seconds(5), every interval: Duration = .milliseconds(10),
                           _ condition: () -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + limit
        while !condition() {
            if ContinuousClock.now > deadline { return false }
            try await Task.sleep(for: interval)
        }
        return true
    }
}

/// One CA process: its own store (connection pool) on the shared database, its authority, its follower.
private final class Replica: Sendable {
    let database: PostgresTestDatabase
    let store: PostgresAuthorityStore
    let authority: CertificateAuthority
    let log = CollectedLog()
    private let follower = Mutex<Task<Void, Never>?>(nil)

    init(database: PostgresTestDatabase, material: CAMaterial) async throws {
        self.database = database
        store = try await PostgresAuthorityStore.connect(host: database.host, port: database.port, user: database.user,
                                                         password: nil, database: database.database, tls: .disable)
        authority = CertificateAuthority(store: store, material: material, policy: IssuancePolicy(trustDomain: "example.org"))
        try await authority.start()
    }

    /// Two replicas of one CA on a new database.
    static func pair() async throws -> (Replica, Replica) {
        let database = try await TestPostgres.shared.freshDatabase()
        let material = try TestCA.material(now: Date())
        return (try await Replica(database: database, material: material), try await Replica(database: database, material: material))
    }

    /// Inserts `count` certificates; returns their serials.
    func issue(_ count: Int) async throws -> [String] {
        var serials: [String] = []
        for index in 0..<count {
            let serial = String(format: "a1%04x", index), now = Date()
            try await store.insertCertificate(CertificateRecord(
                serial: serial, spiffeID: "spiffe://example.org/svc/web", dnsNames: [], ipAddresses: [], notBefore: now,
                notAfter: now.addingTimeInterval(3600), issuedAt: now, der: [0x30, 0x00]),
                audit: AuditEntry(time: now, actor: "test", action: .issue, subject: serial, peer: "test", detail: ""))
            serials.append(serial)
        }
        return serials
    }

    /// Starts the followers and returns once each listens (on both channels: a session seen after its
    /// first LISTEN may not be listening yet). The safety net's read is left far off, so whatever
    /// arrives came from an announcement or a reconnection.
    static func following(_ replicas: Replica..., feeds: [any RevocationChangeFeed]? = nil,
                          safetyInterval: Duration = .seconds(60), heartbeat: Duration = .seconds(2),
                          maximumRetry: Duration = .seconds(5)) async throws {
        for (index, replica) in replicas.enumerated() {
            let service = SharedRevocationFollower(authority: replica.authority, feed: feeds?[index] ?? replica.store,
                                                   logger: replica.log.logger,
                                                   safetyInterval: safetyInterval, heartbeat: heartbeat, maximumRetry: maximumRetry)
            replica.follower.withLock { $0 = Task { await service.run() } }
        }
        let database = replicas[0].database
        let listening = try await ReplicaRevocationTests.eventually {
            (try? TestPostgres.shared.psql(database, """
                SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                AND application_name = '\(PostgresAuthorityStore.listenerName)' AND state = 'idle'
                AND (query LIKE 'LISTEN%\(PostgresAuthorityStore.issuerChannel)%' OR query = 'SELECT 1')
                """)) == String(replicas.count)
        }
        guard listening else { throw CLIFailure("the followers did not listen within 5 s") }
    }

    static func stop(_ replicas: Replica...) async {
        for replica in replicas {
            let task = replica.follower.withLock { $0 }, stopping = ContinuousClock.now
            task?.cancel()
            await task?.value
            #expect(ContinuousClock.now - stopping < .seconds(1), "the follower stops at once")
            await replica.store.close()
        }
    }
}

/// Sequence numbers received, in order.
private final class Received: Sendable {
    private let stored = Mutex<[Int64]>([])

    var sequences: [Int64] { stored.withLock { $0 } }

    func append(_ sequence: Int64) { stored.withLock { $0.append(sequence) } }
}

/// Collects what a registry's watch stream delivers.
private final class Watcher: Sendable {
    private let received = Received()
    private let task: Task<Void, Never>

    init(_ stream: AsyncStream<RevocationRecord>) {
        let received = self.received
        task = Task { for await record in stream { received.append(record.sequence) } }
    }

    deinit { task.cancel() }

    /// True once `count` have arrived (within 5 s), looking every millisecond.
    func reached(count: Int) async throws -> Bool {
        try await ReplicaRevocationTests.eventually(every: .milliseconds(1)) { received.sequences.count >= count }
    }

    /// The sequences received once there are `count` (or after 5 s, whatever came), and after 100 ms more
    /// so that a duplicate arriving late would show.
    func sequences(count: Int) async throws -> [Int64] {
        _ = try await ReplicaRevocationTests.eventually { received.sequences.count >= count }
        try await Task.sleep(for: .milliseconds(100))
        return received.sequences
    }
}

private struct SequenceWriter: RPCWriterProtocol {
    let events: Received

    init(_ events: Received) { self.events = events }

    func write(_ element: Vouch_V1_RevocationEvent) async throws { events.append(element.sequence) }
    func write(contentsOf elements: some Sequence<Vouch_V1_RevocationEvent>) async throws {
        for element in elements { try await write(element) }
    }
}

/// A store's feed whose new sessions can be refused, as a database refusing connections would,
/// while the store's pool goes on working.
/// A feed whose every session listens and is dropped at once.
private final class DroppingFeed: RevocationChangeFeed {
    private let count = Mutex(0)
    var sessions: Int { count.withLock { $0 } }

    func followRevocations(heartbeat: Duration, listening: @escaping @Sendable () async -> Void,
                           announced: @escaping @Sendable (Int64) async -> Void) async throws {
        count.withLock { $0 += 1 }
        await listening()
        throw CLIFailure("terminating connection due to administrator command")
    }
}

private final class GatedFeed: RevocationChangeFeed {
    let base: any RevocationChangeFeed
    private let state = Mutex((refusing: false, refused: 0))

    init(_ base: any RevocationChangeFeed) { self.base = base }

    func refuse(_ refusing: Bool) { state.withLock { $0.refusing = refusing } }

    var refused: Int { state.withLock { $0.refused } }

    func followRevocations(heartbeat: Duration, listening: @escaping @Sendable () async -> Void,
                           announced: @escaping @Sendable (Int64) async -> Void) async throws {
        let refusing = state.withLock { state in
            if state.refusing { state.refused += 1 }
            return state.refusing
        }
        if refusing { throw CLIFailure("database \"vouch\" is not currently accepting connections") }
        try await base.followRevocations(heartbeat: heartbeat, listening: listening, announced: announced)
    }
}
