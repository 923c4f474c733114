import PostgresNIO
import VouchAuthority

/// The audit append as common table expressions of one statement: the head read, each row
/// inserted with its hash and the head moved in one round trip, where reading the head, then
/// inserting row after row, then moving the head took 2 + n. The statement runs after the one
/// taking the writer lock, so at READ COMMITTED it reads the head every earlier write left.
/// Its text does not depend on the number of entries (they are bound as arrays), so it can be
/// prepared once per connection.
enum AuditAppend {
    /// `AuditChain.hash(previous:entry:)` in SQL over the row `e` of audit_entry: float8send is the
    /// time's IEEE bits big-endian, int4send a field's UTF-8 length big-endian (as in the copy check
    /// of `vouch db migrate`).
    static func hash(previous: String) -> String {
        "sha256(\(previous) || float8send(e.time)"
            + ["actor", "action", "subject", "peer", "detail"]
                .map { " || int4send(octet_length(convert_to(e.\($0), 'UTF8'))) || convert_to(e.\($0), 'UTF8')" }.joined()
            + ")"
    }

    /// The expressions audit_entry, audit_chain, audit_appended and audit_moved, for a
    /// `WITH RECURSIVE` list, the entries' fields bound as parameters $first to $first+5
    /// (`bind`). With `gate`, the name of an expression before them, the entries are appended
    /// only if it has a row.
    static func expressions(first: Int, onlyIfRowsIn gate: String? = nil) -> String {
        let p = (first..<first + 6).map { "$\($0)" }
        return """
            audit_entry (time, actor, action, subject, peer, detail, n) AS (
                SELECT * FROM unnest(\(p[0])::float8[], \(p[1])::text[], \(p[2])::text[], \(p[3])::text[], \(p[4])::text[],
                                     \(p[5])::text[]) WITH ORDINALITY
                \(gate.map { "WHERE EXISTS (SELECT 1 FROM \($0))" } ?? "")
            ),
            audit_chain (n, time, actor, action, subject, peer, detail, prev_hash, hash) AS (
                SELECT e.n, e.time, e.actor, e.action, e.subject, e.peer, e.detail, h.last_hash, \(hash(previous: "h.last_hash"))
                FROM audit_entry e JOIN audit_head h ON h.id = 1 WHERE e.n = 1
                UNION ALL
                SELECT e.n, e.time, e.actor, e.action, e.subject, e.peer, e.detail, c.hash, \(hash(previous: "c.hash"))
                FROM audit_chain c JOIN audit_entry e ON e.n = c.n + 1
            ),
            -- Inserted in chain order, so ids ascend along the chain.
            audit_appended AS (
                INSERT INTO audit_event (time, actor, action, subject, peer, detail, prev_hash, hash)
                SELECT time, actor, action, subject, peer, detail, prev_hash, hash FROM audit_chain ORDER BY n
                RETURNING id, hash
            ),
            audit_moved AS (
                UPDATE audit_head SET last_id = a.id, last_hash = a.hash FROM audit_appended a
                WHERE audit_head.id = 1 AND a.id = (SELECT max(id) FROM audit_appended)
                RETURNING last_id
            )
            """
    }

    /// Binds the fields of `entries`, in the order `expressions` numbers them.
    static func bind(_ entries: [AuditEntry], into bindings: inout PostgresBindings) {
        bindings.append(entries.map(\.time.timeIntervalSince1970))
        for field in [\AuditEntry.actor, \.action, \.subject, \.peer, \.detail] {
            bindings.append(entries.map { $0[keyPath: field] })
        }
    }
}
