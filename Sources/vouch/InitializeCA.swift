import VouchAuthority
import VouchSQLiteStore

/// `vouch ca init`'s work, shared with quickstart: writes the CA files, then records the
/// certificates it issued (server, admin) in the new database.
func initializeCA(_ initializer: CAInitializer) async throws -> SQLiteAuthorityStore {
    let issued = try initializer.run()
    let store = try SQLiteAuthorityStore(path: initializer.files.database)
    for record in issued {
        try await store.insertCertificate(record, audit: AuditEntry(
            time: record.issuedAt, actor: "local", action: .issue, subject: record.serial, peer: "local",
            detail: "\(record.spiffeID) (ca init)"))
    }
    return store
}
