import Foundation
import Testing
@testable import VouchAuthority
@testable import VouchPostgresStore

/// What only PostgreSQL's store must show: several replicas on one database, started together
/// and writing together, keep one schema, one audit chain and one revocation budget.
@Suite("PostgreSQL store")
struct PostgresStoreTests {
    static func replicas(_ count: Int, of database: PostgresTestDatabase) async throws -> [PostgresAuthorityStore] {
        try await withThrowingTaskGroup(of: PostgresAuthorityStore.self) { group in
            for _ in 0..<count {
                group.addTask {
                    try await PostgresAuthorityStore.connect(host: database.host, port: database.port, user: database.user,
                                                             password: nil, database: database.database, tls: .disable)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }

    @Test func replicasStartingTogetherMigrateOnce() async throws {
        let database = try await TestPostgres.shared.freshDatabase()
        let stores = try await Self.replicas(4, of: database)
        #expect(try TestPostgres.shared.psql(database, "SELECT string_agg(name, ',' ORDER BY name) FROM schema_migration") == "v1,v2-issuers,v3-root-crl,v4-agent-report")
        for store in stores { await store.close() }
        // A restart finds the schema in place and changes nothing.
        let again = try await Self.replicas(1, of: database)
        #expect(try TestPostgres.shared.psql(database, "SELECT count(*) FROM schema_migration") == "4")
        await again[0].close()
    }

    @Test func replicasWritingTogetherKeepOneChainAndOneBudget() async throws {
        let database = try await TestPostgres.shared.freshDatabase()
        let stores = try await Self.replicas(3, of: database)
        let web = "spiffe://example.org/svc/web"
        for index in 0..<9 {
            try await stores[0].insertCertificate(AuthorityStoreContractTests.certificate(String(format: "%02x", index)),
                                                  audit: AuthorityStoreContractTests.entry(.issue))
        }
        let budget = RevocationBudget(actor: web, now: AuthorityStoreContractTests.now, window: 3600, limit: 4)
        let succeeded = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<9 {
                group.addTask {
                    (try? await stores[index % 3].revoke(serial: String(format: "%02x", index), reason: 1, at: AuthorityStoreContractTests.now,
                                                        withRenewals: false, budget: budget) { serial, _ in
                        AuthorityStoreContractTests.entry(.revoke, actor: web, subject: serial)
                    }) != nil
                }
                for _ in 0..<5 {
                    group.addTask {
                        (try? await stores[(index + 1) % 3].appendAudit(AuthorityStoreContractTests.entry(.issue))) != nil
                    }
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        let appends = 9 * 5, issued = 9, revocations = 4
        #expect(succeeded.filter { $0 }.count == appends + revocations, "every append and four revocations")
        let sequences = try await stores[1].revocations(afterSequence: 0).map(\.sequence)
        #expect(sequences.count == revocations)
        #expect(sequences == sequences.sorted())
        let (rows, head) = try await stores[2].auditChain()
        #expect(rows.count == issued + appends + revocations)
        let verdict = AuditChain.verify(rows, head: head)
        #expect(verdict == .intact(events: rows.count, head: head?.hash ?? [], checkpoints: 0))
        var numbers: [Int64] = []
        let issuer = try await AuthorityStoreContractTests.adopted(stores[0]).intermediate.id
        for store in stores + stores { numbers.append(try await store.nextCRLNumberAndRevocations(issuerID: issuer).number) }
        #expect(numbers == numbers.sorted(), "CRL numbers increase across replicas")
        #expect(Set(numbers).count == numbers.count)
        for store in stores { await store.close() }
    }

    /// `vouch cert list --identity` means the same on every store: the authority's fnmatch.
    @Test func identityGlobsMatchAsFnmatchDoes() async throws {
        let database = try await TestPostgres.shared.freshDatabase()
        let store = try await Self.replicas(1, of: database)[0]
        let ids = ["spiffe://example.org/web/a", "spiffe://example.org/web/b.c", "spiffe://example.org/web/bxc",
                   "spiffe://example.org/db/a", "spiffe://example.org/web/[x]", "spiffe://example.org/Web/a", "spiffe://example.org/web/ä%_"]
        for (index, id) in ids.enumerated() {
            try await store.insertCertificate(AuthorityStoreContractTests.certificate(String(format: "%02x", index), id: id),
                                              audit: AuthorityStoreContractTests.entry(.issue))
        }
        let patterns = ["*", "spiffe://example.org/web/*", "*/web/?", "*/web/b.c", "*/[wd]*/a", "*/[!w]*/a", "*/[^w]*/a",
                        "*/web/\\[x\\]", "*/web/[[]x]", "*[[:upper:]]*", "*/web/ä%_", "*%*", "*_", "*(a|b)", "*/web/[a-b]*", "*/web/[",
                        "spiffe://example.org/web", "^spiffe*", "*a$"]
        for pattern in patterns {
            let listed = try await store.listCertificates(CertificateQuery(identityGlob: pattern, now: AuthorityStoreContractTests.now, limit: 100))
            let expected = Set(ids.filter { Glob.matches(pattern: pattern, $0) })
            #expect(Set(listed.map(\.spiffeID)) == expected, "\(pattern)")
        }
        await store.close()
    }

    /// Connecting fails at once, with PostgreSQL's or the socket's reason, never the password.
    @Test func aDatabaseThatCannotBeOpenedFailsTheConnect() async throws {
        let database = try await TestPostgres.shared.freshDatabase()
        let clock = ContinuousClock(), start = clock.now
        let refused = await #expect(throws: PostgresStoreError.self) {
            _ = try await PostgresAuthorityStore.connect(host: "127.0.0.1", port: 1, user: "vouch", password: "s3cret-pw",
                                                         database: "vouch", tls: .disable)
        }
        #expect(refused?.description.contains("at 127.0.0.1:1 as vouch") == true, "\(String(describing: refused))")
        #expect(refused?.description.contains("s3cret-pw") == false)
        let missing = await #expect(throws: PostgresStoreError.self) {
            _ = try await PostgresAuthorityStore.connect(host: database.host, port: database.port, user: database.user, password: "s3cret-pw",
                                                         database: database.database + "_missing", tls: .disable)
        }
        #expect(missing?.description.contains("does not exist") == true, "\(String(describing: missing))")
        #expect(missing?.sqlState == "3D000")
        #expect(clock.now - start < .seconds(10))
    }

    /// While the database is unreachable a call fails after the connection wait; a call that has
    /// its connection finishes, however long it takes, so a committed write is never reported failed.
    @Test func onlyTheWaitForAConnectionIsBounded() async throws {
        struct Late: Error {}
        let clock = ContinuousClock(), start = clock.now
        await #expect(throws: Late.self) {
            try await LeaseDeadline.run(within: .milliseconds(100), timeout: { Late() }) { deadline in
                try await Task.sleep(for: .seconds(30))  // a lease that never comes, cancelled at the deadline
                return deadline.start()
            }
        }
        #expect(clock.now - start < .seconds(10))
        let finished = try await LeaseDeadline.run(within: .milliseconds(100), timeout: { Late() }) { deadline in
            guard deadline.start() else { return false }
            try? await Task.sleep(for: .milliseconds(400))
            return true
        }
        #expect(finished)
    }

    /// A replica hears of another's issuer change at its commit, on its revocation session (no
    /// second connection), with the new generation; a refused change announces nothing.
    @Test func issuerChangesAreAnnouncedWithTheirGeneration() async throws {
        let database = try await TestPostgres.shared.freshDatabase()
        let stores = try await Self.replicas(2, of: database)
        let (generations, announce) = AsyncStream.makeStream(of: Int64.self)
        let (listening, ready) = AsyncStream.makeStream(of: Void.self)
        let follower = Task {
            try await stores[0].followRevocations(heartbeat: .seconds(5), listening: { ready.yield() }, announced: { _ in },
                                                  issuersChanged: { announce.yield($0) })
        }
        for await _ in listening { break }
        let (r1, i1) = try await AuthorityStoreContractTests.adopted(stores[1])
        let rotation = AuthorityStoreContractTests.rotation(to: "i3", under: r1.id, retiring: i1.id)
        _ = try? await stores[1].changeIssuers(rotation, expectedGeneration: 7, audit: [])
        _ = try await stores[1].changeIssuers(rotation, expectedGeneration: 1, audit: [])
        var heard: [Int64] = []
        for await generation in generations {
            heard.append(generation)
            if heard.count == 2 { break }
        }
        #expect(heard == [1, 2], "adoption, then the rotation")
        follower.cancel()
        _ = await follower.result
        for store in stores { await store.close() }
    }
}
