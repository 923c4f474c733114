import Foundation
import Logging
import NIOSSL
import PostgresNIO
import VouchAuthority

/// The authority's state in a PostgreSQL database that several CA replicas may share.
///
/// Every writing transaction first takes one advisory transaction lock, the writer lock, so writes
/// run one at a time across all replicas, as SQLite's single writer does. Nearly every write
/// appends to the audit hash chain, whose head each append reads and moves, so writers would
/// queue on the head anyway; holding the lock from the start means each statement after it, at
/// READ COMMITTED, sees every write committed before: a token's remaining uses, a lineage, a
/// revocation budget and the chain head are read and changed with nothing in between. Nothing
/// waits on a second lock, so there is no deadlock, and nothing runs SERIALIZABLE, so nothing
/// fails for a serialization conflict and needs retrying. Revocations are numbered in the order
/// they commit, so a watcher resuming after a sequence number misses none.
/// Reads take no lock; those of several statements share one snapshot.
public final class PostgresAuthorityStore: AuthorityStore {
    let client: PostgresClient
    let logger: Logger
    /// Runs the client's connection pool until `close()`.
    private let pool: Task<Void, Never>
    /// How long a call waits for a connection before it fails.
    let connectionWait: Duration
    /// "PostgreSQL database D at HOST:PORT as USER", for errors and the log (never the password).
    let location: String
    /// For sessions of their own, outside the pool (the one listening for revocations).
    let session: PostgresConnection.Configuration
    /// Enrollments written together, a transaction per batch.
    let enrollments = EnrollmentBatcher()

    /// Key of the writer lock ("vouch", then 1).
    static let writerLock: Int64 = 0x766F_7563_6801

    /// Bounds on the pool's sessions, so one replica's trouble cannot stall the others: a replica
    /// that dies or is cut off inside a transaction holds the writer lock only until PostgreSQL
    /// ends its idle session (not until TCP keepalive gives up, hours later); a write that cannot
    /// get the lock, or a statement that runs away, fails as unavailable instead of hanging.
    static let sessionLimits: [(String, String)] = [
        ("idle_in_transaction_session_timeout", "10s"), ("lock_timeout", "3s"), ("statement_timeout", "30s"),
    ]

    /// Connects to `database` on `host` and applies its migrations. `tls` says whether and how the
    /// connections use TLS (libpq's sslmode and sslrootcert). The password is used only to
    /// authenticate, never logged.
    public static func connect(host: String, port: Int = 5432, user: String, password: String?, database: String,
                               tls: PostgresTLS, maximumConnections: Int = 10, connectionWait: Duration = .seconds(10),
                               logger: Logger = Logger(label: "vouch.postgres")) async throws -> PostgresAuthorityStore {
        let location = "PostgreSQL database \(database) at \(host):\(port) as \(user)"
        // Migrations run on a connection of their own, before the pool: a server that is not there,
        // a wrong password or a missing database fail here at once, with PostgreSQL's reason (the
        // pool would retry in the background and tell why only in its log).
        let single: PostgresConnection.Configuration
        do {
            single = PostgresConnection.Configuration(
                host: host, port: port, username: user, password: password, database: database, tls: try tls.connectionTLS())
            let connection = try await PostgresConnection.connect(configuration: single, id: 0, logger: logger)
            do {
                try await PostgresSchema.migrate(on: connection, logger: logger)
            } catch {
                try? await connection.close()
                throw error
            }
            try await connection.close()
        } catch let error as PostgresStoreError {
            throw error
        } catch {
            let failure = PostgresStoreError(location + (tls.mode == .disable ? "" : " (\(tls))"), error)
            guard let explained = tls.explain(failure.description, host: host) else { throw failure }
            throw PostgresStoreError(failure.description, explained)
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: user, password: password, database: database, tls: try tls.clientTLS())
        configuration.options.maximumConnections = maximumConnections
        configuration.options.additionalStartupParameters = sessionLimits
        return PostgresAuthorityStore(client: PostgresClient(configuration: configuration, backgroundLogger: logger),
                                      connectionWait: connectionWait, location: location, session: single, logger: logger)
    }

    /// `connect` to the database `url` names.
    public static func connect(_ url: PostgresURL, password: String?, maximumConnections: Int = 10,
                               connectionWait: Duration = .seconds(10),
                               logger: Logger = Logger(label: "vouch.postgres")) async throws -> PostgresAuthorityStore {
        try await connect(host: url.host, port: url.port, user: url.user, password: password, database: url.database, tls: url.tls,
                          maximumConnections: maximumConnections, connectionWait: connectionWait, logger: logger)
    }

    private init(client: PostgresClient, connectionWait: Duration, location: String, session: PostgresConnection.Configuration,
                 logger: Logger) {
        self.client = client
        self.session = session
        self.connectionWait = connectionWait
        self.location = location
        self.logger = logger
        // The pool works only while its run() does. It runs for the store's lifetime, so the store
        // is usable as soon as it is made, like the SQLite one, before any service group runs.
        // Started at once, run() is running before any lease (else PostgresNIO warns of each).
        if #available(macOS 26, *) {
            pool = Task.immediate { await client.run() }
        } else {
            pool = Task { await client.run() }
        }
    }

    /// Closes every connection; the store answers nothing afterwards.
    public func close() async {
        pool.cancel()
        await pool.value
    }

    deinit { pool.cancel() }

    // MARK: Connections

    /// Runs `body` on a connection of the pool, failing if none is had within `connectionWait`.
    /// A database that cannot be reached (no connection within the wait, the connection lost, the
    /// server shutting down) is `AuthorityError(.unavailable)`, PostgreSQL's reason in its cause;
    /// any other database error is a `PostgresStoreError`.
    func withConnection<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let client = client, wait = connectionWait, location = location
        do {
            // The task group of LeaseDeadline.run ends before this returns: body does not escape.
            return try await withoutActuallyEscaping(body) { body in
                try await LeaseDeadline.run(within: wait, timeout: {
                    ConnectionFailure.unavailable("\(location): no connection to the database within \(wait)")
                }) { deadline in
                    try await client.withConnection { connection in
                        guard deadline.start() else { throw CancellationError() }
                        do {
                            return try await body(connection)
                        } catch {
                            throw ConnectionFailure.Leased(underlying: error)
                        }
                    }
                }
            }
        } catch let failure as ConnectionFailure.Leased {
            throw ConnectionFailure.classify(failure.underlying, leased: true, location: location)
        } catch {
            throw ConnectionFailure.classify(error, leased: false, location: location)
        }
    }

    /// Runs `body` in a transaction holding the writer lock.
    func write<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await withConnection { connection in
            try await Transaction.run(on: connection, .write, prepared: true, logger: logger) { connection in
                try await connection.run(Prepared.WriterLock(), logger: logger)
                return try await body(connection)
            }
        }
    }

    /// Runs `body`'s reads on one snapshot.
    func snapshot<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await withConnection { connection in
            try await Transaction.run(on: connection, .snapshot, logger: logger, body)
        }
    }

    /// The rows of one statement, outside any transaction.
    func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await withConnection { connection in
            try await connection.query(query, logger: logger).collect()
        }
    }

    // MARK: Tokens

    public func insertToken(_ token: TokenRecord, audit: AuditEntry) async throws {
        try await write { connection in
            try await connection.query("""
                INSERT INTO token (id, secret_hash, spiffe_id, dns_names, ip_addresses, created_at, expires_at,
                                   uses_allowed, uses_consumed, revoked)
                VALUES (\(token.id), \(Data(token.secretHash)), \(token.spiffeID), \(token.dnsNames), \(token.ipAddresses),
                        \(token.createdAt.timeIntervalSince1970), \(token.expiresAt.timeIntervalSince1970),
                        \(token.usesAllowed), \(token.usesConsumed), \(token.revoked))
                """, logger: logger)
            try await Self.append([audit], on: connection, logger: logger)
        }
    }

    public func token(id: String) async throws -> TokenRecord? {
        try await withConnection { connection in
            try await connection.first(Prepared.Token(id: id), logger: logger)
        }
    }

    public func listTokens() async throws -> [TokenRecord] {
        try await rows("SELECT * FROM token ORDER BY created_at DESC, id").map(Self.token)
    }

    public func revokeToken(id: String, audit: AuditEntry) async throws -> Bool {
        try await write { connection in
            let changed = try await connection.query("UPDATE token SET revoked = true WHERE id = \(id) RETURNING id", logger: logger)
                .collect()
            guard !changed.isEmpty else { return false }
            try await Self.append([audit], on: connection, logger: logger)
            return true
        }
    }

    // MARK: Certificates

    public func recordEnrollment(tokenID: String, now: Date, certificate: CertificateRecord, audit: [AuditEntry]) async throws {
        let enrollment = Prepared.Enrollment(tokenID: tokenID, now: now, certificate: certificate, audit: audit)
        guard try await enrollments.write(enrollment, to: self) else {
            throw AuthorityError(.unauthenticated, "enrollment token \(tokenID) was already used")
        }
    }

    /// Writes `batch` in one transaction (EnrollmentBatcher); for each, whether it took its token's use.
    func writeEnrollments(_ batch: [Prepared.Enrollment]) async throws -> [Bool] {
        try await write { connection in
            var taken: [Bool] = []
            for enrollment in batch {
                taken.append(try await connection.first(enrollment, logger: logger) == 1)
            }
            return taken
        }
    }

    public func recordRenewal(certificate: CertificateRecord, previousSerial: String, replacing: String?,
                              at time: Date, budget: RevocationBudget?, audit: [AuditEntry]) async throws -> RevocationRecord? {
        try await write { connection in
            let refusal = AuthorityError(.failedPrecondition, "certificate \(previousSerial) was renewed or revoked meanwhile; "
                + "only the newest certificate of a lineage can renew", reason: .certificateSuperseded)
            // A retry replaces the only child, and only while that child is live and has not renewed.
            if let replacing {
                let replaceable = try await connection.query("""
                    SELECT count(*) = 1 FROM certificate c
                    WHERE c.serial = \(replacing) AND c.superseded_by IS NULL
                      AND NOT EXISTS (SELECT 1 FROM revocation r WHERE r.serial = c.serial)
                      AND (SELECT count(*) FROM certificate WHERE renewed_from = \(previousSerial)) = 1
                    """, logger: logger).collect().first?.decode(Bool.self) ?? false
                guard replaceable else { throw refusal }
                if let budget { try budget.check(made: try await Self.revocationsMade(within: budget, on: connection, logger: logger), adding: 1) }
            }
            try await Self.insert(certificate, on: connection, logger: logger)
            // Conditional on what the authority saw: a renewal or revocation of the previous
            // certificate since then makes this change nothing, and the renewal is refused.
            let superseded = try await connection.query("""
                UPDATE certificate SET superseded_by = \(certificate.serial)
                WHERE serial = \(previousSerial) AND superseded_by IS NOT DISTINCT FROM \(replacing)::text
                  AND NOT EXISTS (SELECT 1 FROM revocation WHERE revocation.serial = certificate.serial)
                RETURNING serial
                """, logger: logger).collect()
            guard superseded.count == 1 else { throw refusal }
            try await Self.append(audit, on: connection, logger: logger)
            guard let replacing else { return nil }
            try await connection.query("""
                INSERT INTO revocation (serial, reason, revoked_at)
                VALUES (\(replacing), \(RevocationReason.superseded.rawValue), \(time.timeIntervalSince1970))
                ON CONFLICT (serial) DO NOTHING
                """, logger: logger)
            try await Self.announceRevocations(on: connection, logger: logger)
            return try await Self.revocations(of: [replacing], on: connection, logger: logger).first
        }
    }

    public func insertCertificate(_ certificate: CertificateRecord, audit: AuditEntry) async throws {
        try await write { connection in
            try await Self.insert(certificate, on: connection, logger: logger)
            try await Self.append([audit], on: connection, logger: logger)
        }
    }

    static let certificateColumns = """
        c.*, r.reason AS revocation_reason, r.revoked_at AS revoked_at
        FROM certificate c LEFT JOIN revocation r ON r.serial = c.serial
        """

    public func certificate(serial: String) async throws -> CertificateRecord? {
        try await rows("SELECT \(unescaped: Self.certificateColumns) WHERE c.serial = \(serial)").first.map(Self.certificate)
    }

    public func listCertificates(_ query: CertificateQuery) async throws -> [CertificateRecord] {
        var statement = Self.filter(query)
        statement.append("ORDER BY c.id DESC LIMIT")
        statement.bind(query.limit < 0 ? nil : Int64(query.limit), as: "bigint")
        return try await rows(statement.query(selecting: "SELECT \(Self.certificateColumns)")).map(Self.certificate)
    }

    public func countCertificates(_ query: CertificateQuery) async throws -> Int {
        let statement = Self.filter(query).query(selecting: "SELECT count(*) FROM certificate c LEFT JOIN revocation r ON r.serial = c.serial")
        return try await rows(statement).first?.decode(Int.self) ?? 0
    }

    /// The WHERE clause of a certificate query, as SQLite's store builds it.
    static func filter(_ query: CertificateQuery) -> Statement {
        var statement = Statement()
        let now = query.now.timeIntervalSince1970
        if let glob = query.identityGlob, !glob.isEmpty {
            statement.condition("c.spiffe_id ~"); statement.bind(GlobRegex.translating(glob))
        }
        switch query.status {
        case .active?:
            statement.condition("r.serial IS NULL AND c.not_after >"); statement.bind(now)
        case .revoked?:
            statement.condition("r.serial IS NOT NULL")
        case .expired?:
            statement.condition("r.serial IS NULL AND c.not_after <="); statement.bind(now)
        case nil:
            break
        }
        if let within = query.expiringWithin {
            statement.condition("c.not_after >"); statement.bind(now)
            statement.append("AND c.not_after <="); statement.bind(now + within)
        }
        if let before = query.beforeID {
            statement.condition("c.id <"); statement.bind(before)
        }
        return statement
    }

    // MARK: Revocations

    public func revoke(serial: String, reason: Int, at time: Date, withRenewals: Bool, budget: RevocationBudget?,
                       audit: @Sendable @escaping (_ serial: String, _ spiffeID: String) -> AuditEntry) async throws -> [RevocationRecord] {
        try await write { connection in
            guard let spiffeID = try await connection.query("SELECT spiffe_id FROM certificate WHERE serial = \(serial)", logger: logger)
                .collect().first?.decode(String.self) else { return [] }
            // Inside the transaction, so a renewal committed a moment ago is part of the lineage.
            let targets = [(serial: serial, spiffeID: spiffeID)]
                + (withRenewals ? try await Self.renewals(of: serial, on: connection, logger: logger) : [])
            if let budget {
                let adding = try await connection.query("""
                    SELECT count(*) FROM unnest(\(targets.map(\.serial))::text[]) AS target(serial)
                    WHERE NOT EXISTS (SELECT 1 FROM revocation r WHERE r.serial = target.serial)
                    """, logger: logger).collect().first?.decode(Int.self) ?? 0
                try budget.check(made: try await Self.revocationsMade(within: budget, on: connection, logger: logger), adding: adding)
            }
            var entries: [AuditEntry] = []
            for target in targets {
                let inserted = try await connection.query("""
                    INSERT INTO revocation (serial, reason, revoked_at) VALUES (\(target.serial), \(reason), \(time.timeIntervalSince1970))
                    ON CONFLICT (serial) DO NOTHING RETURNING serial
                    """, logger: logger).collect()
                if !inserted.isEmpty { entries.append(audit(target.serial, target.spiffeID)) }
            }
            if !entries.isEmpty { try await Self.announceRevocations(on: connection, logger: logger) }
            try await Self.append(entries, on: connection, logger: logger)
            return try await Self.revocations(of: targets.map(\.serial), on: connection, logger: logger)
        }
    }

    /// Revocations `budget`'s identity caused within its window, as its audit rows record them.
    static func revocationsMade(within budget: RevocationBudget, on connection: PostgresConnection, logger: Logger) async throws -> Int {
        try await connection.query("""
            SELECT count(*) FROM audit_event
            WHERE actor = \(budget.actor) AND action = ANY(\(budget.actions.map(\.rawValue))::text[])
              AND time >= \(budget.since.timeIntervalSince1970)
            """, logger: logger).collect().first?.decode(Int.self) ?? 0
    }

    public func renewals(of serial: String) async throws -> [String] {
        try await withConnection { connection in
            try await Self.renewals(of: serial, on: connection, logger: logger).map(\.serial)
        }
    }

    /// Every certificate renewed from `serial`, transitively, in issuance order, with its SPIFFE ID.
    static func renewals(of serial: String, on connection: PostgresConnection,
                         logger: Logger) async throws -> [(serial: String, spiffeID: String)] {
        try await connection.query("""
            WITH RECURSIVE line(serial) AS (
                SELECT serial FROM certificate WHERE renewed_from = \(serial)
                UNION SELECT c.serial FROM certificate c JOIN line ON c.renewed_from = line.serial
            )
            SELECT c.serial, c.spiffe_id FROM certificate c JOIN line ON line.serial = c.serial ORDER BY c.id
            """, logger: logger).collect().map { row in
            let (serial, spiffeID) = try row.decode((String, String).self)
            return (serial: serial, spiffeID: spiffeID)
        }
    }

    static let revocationColumns = """
        SELECT r.sequence, r.serial, r.reason, r.revoked_at, c.spiffe_id, c.not_after, c.issuer_id
        FROM revocation r JOIN certificate c ON c.serial = r.serial
        """

    /// The revocations of `serials` there are, in the order of `serials`.
    static func revocations(of serials: [String], on connection: PostgresConnection, logger: Logger) async throws -> [RevocationRecord] {
        let found = try await connection.query("\(unescaped: revocationColumns) WHERE r.serial = ANY(\(serials)::text[])", logger: logger)
            .collect().map(revocation)
        let bySerial = Dictionary(found.map { ($0.serial, $0) }, uniquingKeysWith: { first, _ in first })
        return serials.compactMap { bySerial[$0] }
    }

    public func revocations(afterSequence: Int64) async throws -> [RevocationRecord] {
        try await rows("\(unescaped: Self.revocationColumns) WHERE r.sequence > \(afterSequence) ORDER BY r.sequence").map(Self.revocation)
    }

    // MARK: Audit

    public func appendAudit(_ entry: AuditEntry) async throws {
        try await write { connection in try await Self.append([entry], on: connection, logger: logger) }
    }

    public func auditEvents(afterID: Int64, limit: Int) async throws -> [AuditRecord] {
        let limit: Int64? = limit < 0 ? nil : Int64(limit)
        return try await rows("SELECT * FROM audit_event WHERE id > \(afterID) ORDER BY id LIMIT \(limit)::bigint").map { row in
            AuditRecord(id: try row.makeRandomAccess()["id"].decode(Int64.self), entry: try Self.auditEntry(row))
        }
    }

    public func auditChain() async throws -> (rows: [AuditChain.Row], head: (id: Int64, hash: [UInt8])?) {
        try await snapshot { connection in
            (try await Self.chainRows(afterID: 0, on: connection, logger: logger), try await Self.head(on: connection, logger: logger))
        }
    }

    public func auditHead() async throws -> (id: Int64, hash: [UInt8])? {
        try await withConnection { connection in try await Self.head(on: connection, logger: logger) }
    }

    public func auditChainRows(afterID: Int64) async throws -> [AuditChain.Row] {
        try await withConnection { connection in
            try await Self.chainRows(afterID: afterID, on: connection, logger: logger)
        }
    }

    public func appendAuditCheckpoint(_ checkpoint: AuditCheckpoint) async throws {
        try await withConnection { connection in
            try await connection.query("""
                INSERT INTO audit_checkpoint (row_id, hash, time, signer, signature)
                VALUES (\(checkpoint.rowID), \(Data(checkpoint.hash)), \(Int64(checkpoint.time.timeIntervalSince1970)),
                        \(checkpoint.signer), \(Data(checkpoint.signature)))
                """, logger: logger)
        }
    }

    public func auditCheckpoints() async throws -> [AuditCheckpoint] {
        try await rows("SELECT * FROM audit_checkpoint ORDER BY id").map(Self.auditCheckpoint)
    }

    public func latestAuditCheckpoint() async throws -> AuditCheckpoint? {
        try await rows("SELECT * FROM audit_checkpoint ORDER BY id DESC LIMIT 1").first.map(Self.auditCheckpoint)
    }

    static func head(on connection: PostgresConnection, logger: Logger) async throws -> (id: Int64, hash: [UInt8])? {
        try await connection.query("SELECT last_id, last_hash FROM audit_head WHERE id = 1", logger: logger).collect().first.map { row in
            let (id, hash) = try row.decode((Int64, Data).self)
            return (id, Array(hash))
        }
    }

    static func chainRows(afterID: Int64, on connection: PostgresConnection, logger: Logger) async throws -> [AuditChain.Row] {
        try await connection.query("SELECT * FROM audit_event WHERE id > \(afterID) ORDER BY id", logger: logger).collect().map { row in
            let columns = row.makeRandomAccess()
            return AuditChain.Row(id: try columns["id"].decode(Int64.self), entry: try auditEntry(row),
                                  previousHash: Array(try columns["prev_hash"].decode(Data.self)),
                                  hash: Array(try columns["hash"].decode(Data.self)))
        }
    }

    /// Appends `entries` to the hash chain inside the caller's transaction, which holds the writer
    /// lock, so no other writer reads the head until this one has committed its move.
    static func append(_ entries: [AuditEntry], on connection: PostgresConnection, logger: Logger) async throws {
        guard !entries.isEmpty else { return }
        _ = try await connection.first(Prepared.Append(entries: entries), logger: logger)
    }

    // MARK: Row mapping

    static func insert(_ c: CertificateRecord, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("""
            INSERT INTO certificate (serial, spiffe_id, dns_names, ip_addresses, not_before, not_after, issued_at, der,
                                     renewed_from, token_id, issuer_id)
            VALUES (\(c.serial), \(c.spiffeID), \(c.dnsNames), \(c.ipAddresses), \(c.notBefore.timeIntervalSince1970),
                    \(c.notAfter.timeIntervalSince1970), \(c.issuedAt.timeIntervalSince1970), \(Data(c.der)),
                    \(c.renewedFrom)::text, \(c.tokenID)::text, \(c.issuerID)::bigint)
            """, logger: logger)
    }

    static func auditEntry(_ row: PostgresRow) throws -> AuditEntry {
        let columns = row.makeRandomAccess()
        return AuditEntry(time: Date(timeIntervalSince1970: try columns["time"].decode(Double.self)),
                          actor: try columns["actor"].decode(String.self), recordedAction: try columns["action"].decode(String.self),
                          subject: try columns["subject"].decode(String.self), peer: try columns["peer"].decode(String.self),
                          detail: try columns["detail"].decode(String.self))
    }

    static func auditCheckpoint(_ row: PostgresRow) throws -> AuditCheckpoint {
        let columns = row.makeRandomAccess()
        return AuditCheckpoint(rowID: try columns["row_id"].decode(Int64.self), hash: Array(try columns["hash"].decode(Data.self)),
                               time: Date(timeIntervalSince1970: Double(try columns["time"].decode(Int64.self))),
                               signer: try columns["signer"].decode(String.self),
                               signature: Array(try columns["signature"].decode(Data.self)))
    }

    static func token(_ row: PostgresRow) throws -> TokenRecord {
        let columns = row.makeRandomAccess()
        return TokenRecord(id: try columns["id"].decode(String.self), secretHash: Array(try columns["secret_hash"].decode(Data.self)),
                           spiffeID: try columns["spiffe_id"].decode(String.self),
                           dnsNames: try columns["dns_names"].decode([String].self),
                           ipAddresses: try columns["ip_addresses"].decode([String].self),
                           createdAt: Date(timeIntervalSince1970: try columns["created_at"].decode(Double.self)),
                           expiresAt: Date(timeIntervalSince1970: try columns["expires_at"].decode(Double.self)),
                           usesAllowed: try columns["uses_allowed"].decode(Int.self),
                           usesConsumed: try columns["uses_consumed"].decode(Int.self),
                           revoked: try columns["revoked"].decode(Bool.self))
    }

    static func certificate(_ row: PostgresRow) throws -> CertificateRecord {
        let columns = row.makeRandomAccess()
        return CertificateRecord(
            id: try columns["id"].decode(Int64.self), serial: try columns["serial"].decode(String.self),
            spiffeID: try columns["spiffe_id"].decode(String.self), dnsNames: try columns["dns_names"].decode([String].self),
            ipAddresses: try columns["ip_addresses"].decode([String].self),
            notBefore: Date(timeIntervalSince1970: try columns["not_before"].decode(Double.self)),
            notAfter: Date(timeIntervalSince1970: try columns["not_after"].decode(Double.self)),
            issuedAt: Date(timeIntervalSince1970: try columns["issued_at"].decode(Double.self)),
            der: Array(try columns["der"].decode(Data.self)), renewedFrom: try columns["renewed_from"].decode(String?.self),
            supersededBy: try columns["superseded_by"].decode(String?.self), tokenID: try columns["token_id"].decode(String?.self),
            revokedAt: try columns["revoked_at"].decode(Double?.self).map(Date.init(timeIntervalSince1970:)),
            revocationReason: try columns["revocation_reason"].decode(Int?.self), issuerID: try columns["issuer_id"].decode(Int64?.self))
    }

    static func revocation(_ row: PostgresRow) throws -> RevocationRecord {
        let (sequence, serial, reason, revokedAt, spiffeID, notAfter, issuerID)
            = try row.decode((Int64, String, Int, Double, String, Double, Int64?).self)
        return RevocationRecord(sequence: sequence, serial: serial, reason: reason, revokedAt: Date(timeIntervalSince1970: revokedAt),
                                spiffeID: spiffeID, notAfter: Date(timeIntervalSince1970: notAfter), issuerID: issuerID)
    }
}
