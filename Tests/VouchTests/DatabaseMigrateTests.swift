import Foundation
import GRPCCore
import VouchAPI
import VouchAuthority
import VouchCrypto
import VouchPostgresStore
import VouchSQLiteStore
import XCTest

/// `vouch db migrate`: a CA's SQLite state copied whole into an empty PostgreSQL database, where
/// the CA goes on numbering after it; a database that is not empty, or not reachable, is refused.
final class DatabaseMigrateTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    func migrate(_ ca: CAFixture, to url: String, _ extra: [String] = []) throws -> CommandResult {
        try execute(VouchBinary.path, ["db", "migrate", "--dir", ca.caDir, "--to", url] + extra)
    }

    func connect(_ database: PostgresTestDatabase) async throws -> PostgresAuthorityStore {
        try await PostgresAuthorityStore.connect(host: database.host, port: database.port, user: database.user, password: nil,
                                                 database: database.database, tls: .disable)
    }

    func testMigrationCopiesEveryRowAndTheCopyGoesOnNumberingAfterIt() async throws {
        let ca = try CAFixture()
        // A lineage: enrolled with a two-use token (one use left), renewed, the renewal retried (its
        // first child revoked as superseded), then revoked for key compromise with its renewals.
        let key = try PrivateKey(generating: .p256)
        let first = try await ca.enroll(token: try ca.createToken(spiffeID: Self.web, uses: 2), key: key)
        let firstIdentity = try ca.writeIdentity(first, key: key, name: "first")
        _ = try await ca.renew(with: firstIdentity, newKey: try PrivateKey(generating: .p256))
        _ = try await ca.renew(with: firstIdentity, newKey: try PrivateKey(generating: .p256))
        let revoked = try vouch("cert", "revoke", first.serial, "--reason", "keyCompromise", "--dir", ca.caDir, "--server", ca.server.address)
        XCTAssertEqual(revoked.status, 0, revoked.stderr)
        // An identity that stays live, and a revoked token.
        let liveKey = try PrivateKey(generating: .p256)
        let live = try ca.writeIdentity(try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/db"), key: liveKey),
                                        key: liveKey, name: "live")
        let tokenID = String(try ca.createToken(spiffeID: "spiffe://example.org/svc/late").split(separator: ".")[1])
        let tokenRevoked = try vouch("token", "revoke", tokenID, "--dir", ca.caDir, "--server", ca.server.address)
        XCTAssertEqual(tokenRevoked.status, 0, tokenRevoked.stderr)
        let checkpointFile = ca.root + "/checkpoint.json"
        let checkpoint = try vouch("audit", "checkpoint", "--dir", ca.caDir, "--server", ca.server.address, "--out", checkpointFile)
        XCTAssertEqual(checkpoint.status, 0, checkpoint.stderr)
        _ = try await ca.ca(ca.anonymous) { try await $0.getCRL(Vouch_V1_CRLRequest()) }  // a CRL number handed out
        XCTAssertEqual(ca.server.stop(), 0)

        // The server adopted its directory's pair as issuers; an agent confirmed the bundle it holds.
        try await SQLiteAuthorityStore(path: ca.caDir + "/vouch.db").recordTrustConfirmation(
            serial: first.serial, spiffeID: Self.web, generation: 1, bundleSHA256: Array(repeating: 9, count: 32), peer: "127.0.0.1:1", at: Date())
        // and reported what it serves (the fleet view).
        try await SQLiteAuthorityStore(path: ca.caDir + "/vouch.db").recordAgentReport(
            AgentReportRecord(servingSerial: first.serial, trustGeneration: 1, bundleSHA256: Array(repeating: 9, count: 32),
                              rootSerials: ["0a", "0b"], lastError: "renew: unavailable", lastErrorAt: 5, hostName: "web-1"),
            callerSerial: first.serial, spiffeID: Self.web, peer: "127.0.0.1:1", at: Date())
        // Read and closed again: the command refuses a file another process has open, this one too.
        let source = try await SQLiteAuthorityStore(path: ca.caDir + "/vouch.db").exportAll()
        XCTAssertEqual(source.issuers.map(\.kind), [.root, .intermediate])
        // ca init adopted the pair (generation 1) and signed the root's first CRL (2), which the copy carries.
        XCTAssertEqual(source.issuerGeneration, 2)
        XCTAssertEqual(source.issuers.first?.crlNumber, 1)
        XCTAssertNotNil(source.issuers.first?.crlDER)
        XCTAssertEqual(source.trustConfirmations.count, 1)
        XCTAssertEqual(source.agentReports.map(\.lineage), [first.serial])
        XCTAssertEqual(source.revocations.map(\.reason), [RevocationReason.superseded.rawValue, 1, 1], "child, first, retried child")
        XCTAssertTrue(source.tokens.contains { $0.usesAllowed == 2 && $0.usesConsumed == 1 } && source.tokens.contains(where: \.revoked))
        XCTAssertFalse(source.auditCheckpoints.isEmpty)
        XCTAssertGreaterThan(source.crlNumber, 0)

        let database = try await TestPostgres.shared.freshDatabase()
        let url = TestPostgres.url(of: database)
        let migrated = try migrate(ca, to: url, ["--json"])
        XCTAssertEqual(migrated.status, 0, migrated.stderr)
        let summary = try JSONSerialization.jsonObject(with: Data(migrated.stdout.utf8)) as? [String: Any] ?? [:]
        XCTAssertEqual(summary["certificates"] as? Int, source.certificates.count)
        XCTAssertEqual(summary["tokens"] as? Int, source.tokens.count)
        XCTAssertEqual(summary["revocations"] as? Int, source.revocations.count)
        XCTAssertEqual(summary["auditEvents"] as? Int, source.auditEvents.count)
        XCTAssertEqual(summary["auditCheckpoints"] as? Int, source.auditCheckpoints.count)
        XCTAssertEqual(summary["issuers"] as? Int, 2)
        XCTAssertEqual(summary["issuerGeneration"] as? Int, 2)
        XCTAssertEqual(summary["trustConfirmations"] as? Int, 1)
        XCTAssertEqual(summary["agentReports"] as? Int, 1)
        XCTAssertEqual(summary["verified"] as? Bool, true)

        // Every row reads back the same from either store, ids and lineage columns included.
        let sqlite = try SQLiteAuthorityStore(path: ca.caDir + "/vouch.db")
        let postgres = try await connect(database)
        let everything = CertificateQuery(now: Date(), limit: -1)
        let copied = try await postgres.listCertificates(everything)
        let original = try await sqlite.listCertificates(everything)
        XCTAssertEqual(copied, original)
        XCTAssertTrue(copied.contains { $0.supersededBy != nil } && copied.contains { $0.renewedFrom != nil } && copied.contains { $0.tokenID != nil })
        let (tokens, originalTokens) = (try await postgres.listTokens(), try await sqlite.listTokens())
        XCTAssertEqual(tokens, originalTokens)
        let (revocations, originalRevocations) = (try await postgres.revocations(afterSequence: 0), try await sqlite.revocations(afterSequence: 0))
        XCTAssertEqual(revocations, originalRevocations)
        let (checkpoints, originalCheckpoints) = (try await postgres.auditCheckpoints(), try await sqlite.auditCheckpoints())
        XCTAssertEqual(checkpoints, originalCheckpoints)
        let (issuers, originalIssuers) = (try await postgres.issuers(), try await sqlite.issuers())
        XCTAssertEqual(issuers, originalIssuers, "ids, states, CRL numbers and the generation")
        XCTAssertTrue(copied.contains { $0.issuerID == originalIssuers.activeIntermediate?.id }, "certificates keep their issuer (compared above)")
        let (confirmations, originalConfirmations) = (try await postgres.trustConfirmations(), try await sqlite.trustConfirmations())
        XCTAssertEqual(confirmations, originalConfirmations)
        let (agentReports, originalAgentReports) = (try await postgres.agentReports(), try await sqlite.agentReports())
        XCTAssertEqual(agentReports, originalAgentReports, "every field, first_seen and root serials included")
        XCTAssertEqual(agentReports.first?.report.rootSerials, ["0a", "0b"])
        let chain = try await postgres.auditChain()
        XCTAssertEqual(chain.rows.map(\.id), source.auditEvents.map(\.id))
        XCTAssertEqual(chain.rows.map(\.entry), source.auditEvents.map(\.entry))
        XCTAssertEqual(chain.rows.map(\.previousHash), source.auditEvents.map(\.previousHash))
        XCTAssertEqual(chain.rows.map(\.hash), source.auditEvents.map(\.hash))
        let head = try XCTUnwrap(source.auditHead)
        XCTAssertEqual(chain.head?.id, head.id)
        XCTAssertEqual(chain.head?.hash, head.hash)
        let verified = try vouch("audit", "verify", "--dir", ca.caDir, "--database", url, "--checkpoint", checkpointFile)
        XCTAssertEqual(verified.status, 0, verified.stderr)
        XCTAssertEqual(verified.stdout, "audit log intact: \(source.auditEvents.count) events, head \(head.hash.hex), "
                       + "\(source.auditCheckpoints.count + 1) signed checkpoints match\n")

        // A server on the copy renews a certificate issued before the move and revokes the renewal:
        // CRL number, row id, revocation sequence and audit chain go on after the copied ones.
        let replica = try CAFixture(reusing: ca, server: try ServerProcess(directory: ca.caDir, extraArguments: ["--database", url]))
        let crl = try await replica.ca(replica.anonymous) { try await $0.getCRL(Vouch_V1_CRLRequest()) }
        XCTAssertGreaterThan(try XCTUnwrap(try CertificateRevocationList(der: Array(crl.crl)).number), source.crlNumber)
        let renewed = try await replica.renew(with: live, newKey: try PrivateKey(generating: .p256))
        _ = try await replica.revoke(renewed.serial, reason: 4, as: replica.admin)
        XCTAssertEqual(replica.server.stop(), 0)
        let stored = try await postgres.certificate(serial: renewed.serial)
        // The replica may first issue its own listener certificate: the first new row follows the copied ones.
        let lastCopied = source.certificates.last!.id!
        let added = try await postgres.listCertificates(CertificateQuery(now: Date(), limit: -1)).compactMap(\.id).filter { $0 > lastCopied }
        XCTAssertEqual(added.min(), lastCopied + 1)
        XCTAssertTrue(try XCTUnwrap(stored?.id) > lastCopied)
        XCTAssertEqual(stored?.renewedFrom, copied.first { $0.spiffeID == "spiffe://example.org/svc/db" }?.serial)
        let revokedAfter = try await postgres.revocations(afterSequence: source.revocations.last!.sequence)
        XCTAssertEqual(revokedAfter.map(\.sequence), [source.revocations.last!.sequence + 1])
        XCTAssertEqual(revokedAfter.map(\.serial), [renewed.serial])
        let appended = try await postgres.auditChainRows(afterID: head.id)
        XCTAssertEqual(appended.first?.id, head.id + 1)
        XCTAssertEqual(appended.first?.previousHash, head.hash, "the first new row chains onto the copied head")
        let after = try await postgres.auditChain()
        XCTAssertEqual(AuditChain.verify(after.rows, head: after.head).isIntact, true)
        let copiedCheckpoint = source.auditCheckpoints.last!.id
        XCTAssertEqual(try TestPostgres.shared.psql(database, """
            SELECT coalesce(min(id), nextval(pg_get_serial_sequence('audit_checkpoint', 'id'))) FROM audit_checkpoint WHERE id > \(copiedCheckpoint)
            """), "\(copiedCheckpoint + 1)", "the next checkpoint (the server's, or the counter's next) follows the copied ones")
        XCTAssertEqual(try TestPostgres.shared.psql(database, "SELECT nextval(pg_get_serial_sequence('issuer', 'id'))"),
                       "\(originalIssuers.issuers.last!.id + 1)", "the next issuer follows the copied ones")
        await postgres.close()
    }

    func testATargetThatIsNotEmptyASourceStillOpenOrEditedOrAFailedCopyChangesNothing() async throws {
        let ca = try CAFixture()
        let database = try await TestPostgres.shared.freshDatabase()
        let url = TestPostgres.url(of: database)
        // The server still has the SQLite file open.
        let whileRunning = try migrate(ca, to: url)
        XCTAssertEqual(whileRunning.status, 1)
        XCTAssertTrue(whileRunning.stderr.contains("has \(ca.caDir)/vouch.db open (a running vouch server?): stop it first"), whileRunning.stderr)
        XCTAssertEqual(ca.server.stop(), 0)

        let store = try await connect(database)
        try await store.appendAudit(AuditEntry(time: Date(), actor: "local", action: .issue, subject: "01", peer: "", detail: "already here"))
        await store.close()
        let state = """
            SELECT (SELECT count(*) FROM certificate) || ' ' || (SELECT count(*) FROM revocation) || ' ' || (SELECT count(*) FROM token)
                || ' ' || (SELECT string_agg(id || detail, ',') FROM audit_event) || ' ' || (SELECT last_id || encode(last_hash, 'hex') FROM audit_head)
                || ' ' || (SELECT last_number FROM crl_state) || ' ' || (SELECT last_value FROM certificate_id_seq)
            """
        let before = try TestPostgres.shared.psql(database, state)
        let refused = try migrate(ca, to: url)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("the target database is not empty (0 certificates, 0 tokens, 0 revocations, 1 audit events, "
                                              + "0 audit checkpoints); it was left unchanged"), refused.stderr)
        XCTAssertEqual(try TestPostgres.shared.psql(database, state), before)

        // A copy that fails half-way leaves the target empty: here a revocation of a certificate
        // the file lacks (sqlite3 does not enforce foreign keys), refused after the certificates went in.
        let orphan = try execute("/usr/bin/sqlite3", [ca.caDir + "/vouch.db", "INSERT INTO revocation (serial, reason, revoked_at) VALUES ('00ff', 1, 0)"])
        XCTAssertEqual(orphan.status, 0, orphan.stderr)
        let halfway = try await TestPostgres.shared.freshDatabase()
        let failed = try migrate(ca, to: TestPostgres.url(of: halfway))
        XCTAssertEqual(failed.status, 1)
        XCTAssertTrue(failed.stderr.contains("violates foreign key constraint"), failed.stderr)
        XCTAssertEqual(try TestPostgres.shared.psql(halfway, """
            SELECT (SELECT count(*) FROM certificate) + (SELECT count(*) FROM token) + (SELECT count(*) FROM revocation)
                + (SELECT count(*) FROM audit_event) + (SELECT count(*) FROM audit_checkpoint) || ' '
                || (SELECT last_id FROM audit_head) || ' ' || nextval(pg_get_serial_sequence('certificate', 'id'))
            """), "0 0 1", "no row, the head and the counters as new")

        // A source whose audit log was edited is not copied anywhere.
        let edited = try execute("/usr/bin/sqlite3", [ca.caDir + "/vouch.db", "UPDATE audit_event SET detail = 'edited' WHERE id = 2"])
        XCTAssertEqual(edited.status, 0, edited.stderr)
        let emptyTarget = try await TestPostgres.shared.freshDatabase()
        let broken = try migrate(ca, to: TestPostgres.url(of: emptyTarget))
        XCTAssertEqual(broken.status, 1)
        XCTAssertTrue(broken.stderr.hasPrefix("vouch: the audit log of \(ca.caDir)/vouch.db is broken at row 2: its content does not match its hash"),
                      broken.stderr)
        XCTAssertEqual(try TestPostgres.shared.psql(emptyTarget, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "0",
                       "refused before connecting: not even the schema")
    }

    func testAnUnreachableDatabaseOrAWrongPasswordFailsClearlyWithoutShowingThePassword() async throws {
        let ca = try CAFixture()
        XCTAssertEqual(ca.server.stop(), 0)
        let secret = "correct-horse-battery-staple"
        let passwordFile = ca.root + "/db-password"
        try (secret + "\n").write(toFile: passwordFile, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: passwordFile)  // else a warning comes first

        // Nothing listens on the port.
        let closedPort = try FakePostgres.freePort()
        let unreachable = try migrate(ca, to: "postgres://vouch@127.0.0.1:\(closedPort)/vouch", ["--database-password-file", passwordFile])
        XCTAssertEqual(unreachable.status, 1)
        XCTAssertTrue(unreachable.stderr.hasPrefix("vouch: cannot open the database: PostgreSQL database vouch at 127.0.0.1:\(closedPort) as vouch"),
                      unreachable.stderr)
        XCTAssertTrue(unreachable.stderr.lowercased().contains("connection refused"), unreachable.stderr)

        // A server that asks for the password and refuses it, as PostgreSQL does.
        let server = try FakePostgres()
        let wrong = try migrate(ca, to: "postgres://vouch@127.0.0.1:\(server.port)/vouch?sslmode=disable", ["--database-password-file", passwordFile])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("password authentication failed for user \"vouch\" (SQLSTATE 28P01)"), wrong.stderr)
        XCTAssertEqual(server.receivedPassword, secret, "the password went to the server")
        // Nor in the URL, where `ps` and logs would show it.
        let inURL = try migrate(ca, to: "postgres://vouch:\(secret)@127.0.0.1:\(server.port)/vouch")
        XCTAssertEqual(inURL.status, 1)
        XCTAssertTrue(inURL.stderr.hasPrefix("vouch: --to: the database URL must not carry a password"), inURL.stderr)
        for result in [unreachable, wrong, inURL] {
            XCTAssertFalse((result.stdout + result.stderr).contains(secret), "the password is never printed")
        }
    }
}

extension AuditChain.Verdict {
    var isIntact: Bool { if case .intact = self { true } else { false } }
}

/// A PostgreSQL server as far as its password check: it answers one connection's startup with a
/// cleartext password request, keeps the password it gets, and refuses it as PostgreSQL does.
final class FakePostgres: @unchecked Sendable {
    private let listener: Int32
    private(set) var port = 0
    private let received = NSCondition()
    private var password: String?

    init() throws {
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        port = try Self.bind(listener)
        guard listen(listener, 4) == 0 else { throw CLIFailure("listen failed") }
        Thread { [self] in serve() }.start()
    }

    deinit {
        shutdown(listener, Int32(SHUT_RDWR))  // wakes an accept still waiting
        close(listener)
    }

    /// A port nothing listens on (bound, then closed).
    static func freePort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        return try bind(descriptor)
    }

    private static func bind(_ descriptor: Int32) throws -> Int {
        var address = SlowProxy.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Foundation.bind(descriptor, $0, length) }
        }
        guard bound == 0 else { throw CLIFailure("bind failed") }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// The password the client sent, once it has (waits up to 10 s).
    var receivedPassword: String? {
        received.withLock {
            _ = password == nil ? received.wait(until: Date().addingTimeInterval(10)) : true
            return password
        }
    }

    private func serve() {
        let client = accept(listener, nil, nil)
        guard client >= 0 else { return }
        defer { close(client) }
        // The startup message: length (with itself), protocol, parameters; a request for TLS before it is declined.
        guard var length = readInt32(client), var body = readBytes(client, Int(length) - 4) else { return }
        if body == int32(80_877_103) {
            write(client, [UInt8(ascii: "N")])
            guard let next = readInt32(client), let nextBody = readBytes(client, Int(next) - 4) else { return }
            (length, body) = (next, nextBody)
        }
        // Then: AuthenticationCleartextPassword.
        write(client, [UInt8(ascii: "R")] + int32(8) + int32(3))
        // PasswordMessage: 'p', length, the password and a NUL.
        guard readBytes(client, 1) == [UInt8(ascii: "p")], let passwordLength = readInt32(client),
              let bytes = readBytes(client, Int(passwordLength) - 4) else { return }
        received.withLock {
            password = String(decoding: bytes.dropLast(), as: UTF8.self)
            received.broadcast()
        }
        var fields: [UInt8] = []
        for (code, text) in [("S", "FATAL"), ("V", "FATAL"), ("C", "28P01"), ("M", "password authentication failed for user \"vouch\"")] {
            fields += [UInt8(ascii: Unicode.Scalar(code)!)] + Array(text.utf8) + [0]
        }
        fields.append(0)
        write(client, [UInt8(ascii: "E")] + int32(UInt32(fields.count + 4)) + fields)
    }

    private func int32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.bigEndian, Array.init) }

    private func readInt32(_ descriptor: Int32) -> UInt32? {
        readBytes(descriptor, 4).map { $0.reduce(0) { $0 << 8 | UInt32($1) } }
    }

    private func readBytes(_ descriptor: Int32, _ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count), done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress! + done, count - done) }
            guard got > 0 else { return nil }
            done += got
        }
        return bytes
    }

    private func write(_ descriptor: Int32, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress!, bytes.count) }
    }
}
