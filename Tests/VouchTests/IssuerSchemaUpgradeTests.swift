import Foundation
import Testing
import VouchAuthority
@testable import VouchPostgresStore
@testable import VouchSQLiteStore

/// A database written by a release without issuers upgrades in place: opening it adds the issuer
/// tables, and adopting the CA directory's pair gives every existing certificate its issuer and
/// continues the CRL number the database had reached.
@Suite("Issuer schema upgrade")
struct IssuerSchemaUpgradeTests {
    /// Rows an older release wrote: two certificates (one revoked) and CRL number 7 handed out.
    static let oldRows = """
        INSERT INTO certificate (serial, spiffe_id, dns_names, ip_addresses, not_before, not_after, issued_at, der)
            VALUES ('0a', 'spiffe://example.org/svc/a', DNS, IPS, 0, 4000000000, 0, X'3000');
        INSERT INTO certificate (serial, spiffe_id, dns_names, ip_addresses, not_before, not_after, issued_at, der)
            VALUES ('0b', 'spiffe://example.org/svc/b', DNS, IPS, 0, 4000000000, 0, X'3000');
        INSERT INTO revocation (serial, reason, revoked_at) VALUES ('0b', 1, 0);
        UPDATE crl_state SET last_number = 7 WHERE id = 1
        """

    static func expectUpgraded(_ store: any AuthorityStore, crlState: () throws -> String) async throws {
        #expect(try await store.issuers() == IssuerSnapshot(generation: 0, issuers: []))
        #expect(try await store.certificate(serial: "0a")?.issuerID == nil)
        let (_, intermediate) = try await AuthorityStoreContractTests.adopted(store)
        #expect(intermediate.crlNumber == 7, "continues the database's CRL number")
        #expect(try await store.certificate(serial: "0a")?.issuerID == intermediate.id)
        #expect(try await store.revocations(afterSequence: 0).map(\.issuerID) == [intermediate.id])
        let crl = try await store.nextCRLNumberAndRevocations(issuerID: intermediate.id)
        #expect(crl.number == 8 && crl.revocations.map(\.serial) == ["0b"])
        #expect(try crlState() == "8", "a replica not upgraded yet numbers on from there")
    }

    @Test func anOldSQLiteDatabaseUpgradesInPlace() async throws {
        let path = try temporaryDirectory() + "/vouch.db"
        try SQLiteAuthorityStore.createDatabase(at: path, migratedUpTo: "v4-lineage")
        let rows = Self.oldRows.replacingOccurrences(of: "DNS, IPS", with: "'', ''")
        let written = try execute("/usr/bin/sqlite3", [path, rows])
        #expect(written.status == 0, "\(written.stderr)")

        let store = try SQLiteAuthorityStore(path: path)
        try await Self.expectUpgraded(store) {
            try execute("/usr/bin/sqlite3", [path, "SELECT last_number FROM crl_state"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    @Test func anOldPostgreSQLDatabaseUpgradesInPlace() async throws {
        let database = try await TestPostgres.shared.freshDatabase()
        let v1 = try #require(PostgresSchema.migrations.first)
        #expect(v1.name == "v1")
        _ = try TestPostgres.shared.psql(database, v1.statements.joined(separator: ";\n") + """
            ;
            CREATE TABLE schema_migration (name text PRIMARY KEY, applied_at double precision NOT NULL);
            INSERT INTO schema_migration VALUES ('v1', 0);
            """ + Self.oldRows.replacingOccurrences(of: "DNS, IPS", with: "'{}', '{}'").replacingOccurrences(of: "X'3000'", with: "'\\x3000'"))

        let store = try await PostgresAuthorityStore.connect(host: database.host, port: database.port, user: database.user,
                                                             password: nil, database: database.database, tls: .disable)
        try await Self.expectUpgraded(store) { try TestPostgres.shared.psql(database, "SELECT last_number FROM crl_state") }
        await store.close()
    }
}
