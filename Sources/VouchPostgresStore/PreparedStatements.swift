import Foundation
import Logging
import PostgresNIO
import VouchAuthority

/// The statements of every enrollment, prepared once per connection of the pool: PostgreSQL
/// parses and plans them once, not at each call, and each call sends only its parameters.
/// Their columns are named, never `*`: a prepared plan whose result changes shape (a later
/// migration adding a column) fails until the connection closes.
enum Prepared {
    /// A statement that returns no rows the caller reads.
    protocol Command: PostgresPreparedStatement where Row == () {}

    struct Begin: Command {
        static let name = "vouch_begin"
        static let sql = Transaction.Mode.write.rawValue
        func makeBindings() -> PostgresBindings { PostgresBindings() }
        func decodeRow(_ row: PostgresRow) {}
    }

    struct Commit: Command {
        static let name = "vouch_commit"
        static let sql = "COMMIT"
        func makeBindings() -> PostgresBindings { PostgresBindings() }
        func decodeRow(_ row: PostgresRow) {}
    }

    struct WriterLock: Command {
        static let name = "vouch_writer_lock"
        static let sql = "SELECT pg_advisory_xact_lock($1)"
        func makeBindings() -> PostgresBindings {
            var bindings = PostgresBindings()
            bindings.append(PostgresAuthorityStore.writerLock)
            return bindings
        }
        func decodeRow(_ row: PostgresRow) {}
    }

    struct Token: PostgresPreparedStatement {
        static let name = "vouch_token"
        static let sql = """
            SELECT id, secret_hash, spiffe_id, dns_names, ip_addresses, created_at, expires_at, uses_allowed, uses_consumed, revoked
            FROM token WHERE id = $1
            """
        let id: String
        func makeBindings() -> PostgresBindings {
            var bindings = PostgresBindings()
            bindings.append(id)
            return bindings
        }
        func decodeRow(_ row: PostgresRow) throws -> TokenRecord { try PostgresAuthorityStore.token(row) }
    }

    /// The audit append of every other write (AuditAppend); its one row is the number of heads moved.
    struct Append: PostgresPreparedStatement {
        static let name = "vouch_audit_append"
        static let sql = "WITH RECURSIVE \(AuditAppend.expressions(first: 1)) SELECT count(*) FROM audit_moved"
        let entries: [AuditEntry]

        func makeBindings() -> PostgresBindings {
            var bindings = PostgresBindings()
            AuditAppend.bind(entries, into: &bindings)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Int { try row.decode(Int.self) }
    }

    /// The token's use, the certificate and its audit rows in one statement, each only if the
    /// token was still usable; its one row is the number of uses taken, 1 or 0.
    struct Enrollment: PostgresPreparedStatement {
        static let name = "vouch_enrollment"
        static let sql = """
            WITH RECURSIVE consumed AS (
                UPDATE token SET uses_consumed = uses_consumed + 1
                WHERE id = $1 AND NOT revoked AND expires_at > $2 AND uses_consumed < uses_allowed
                RETURNING id
            ),
            issued AS (
                INSERT INTO certificate (serial, spiffe_id, dns_names, ip_addresses, not_before, not_after, issued_at, der,
                                         renewed_from, token_id, issuer_id)
                SELECT $3::text, $4::text, $5::text[], $6::text[], $7::float8, $8::float8, $9::float8, $10::bytea,
                       $11::text, $12::text, $13::bigint
                FROM consumed
            ),
            \(AuditAppend.expressions(first: 14, onlyIfRowsIn: "consumed"))
            SELECT count(*) FROM consumed
            """
        let tokenID: String
        let now: Date
        let certificate: CertificateRecord
        let audit: [AuditEntry]

        func makeBindings() throws -> PostgresBindings {
            let c = certificate
            var bindings = PostgresBindings()
            bindings.append(tokenID)
            bindings.append(now.timeIntervalSince1970)
            bindings.append(c.serial)
            bindings.append(c.spiffeID)
            bindings.append(c.dnsNames)
            bindings.append(c.ipAddresses)
            bindings.append(c.notBefore.timeIntervalSince1970)
            bindings.append(c.notAfter.timeIntervalSince1970)
            bindings.append(c.issuedAt.timeIntervalSince1970)
            try bindings.append(Data(c.der))
            bindings.append(c.renewedFrom)
            bindings.append(c.tokenID)
            bindings.append(c.issuerID)
            AuditAppend.bind(audit, into: &bindings)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Int { try row.decode(Int.self) }
    }
}

extension PostgresConnection {
    /// Runs `command`, reading to its end.
    func run(_ command: some Prepared.Command, logger: Logger) async throws {
        for try await _ in try await execute(command, logger: logger) {}
    }

    /// The first row of `statement`, read to its end.
    func first<Statement: PostgresPreparedStatement>(_ statement: Statement, logger: Logger) async throws -> Statement.Row? {
        var first: Statement.Row?
        for try await row in try await execute(statement, logger: logger) where first == nil {
            first = row
        }
        return first
    }
}
