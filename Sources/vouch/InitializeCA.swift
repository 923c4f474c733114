import Foundation
import VouchAuthority
import VouchSQLiteStore

/// `vouch ca init`'s work, shared with quickstart: writes the CA files, then records the
/// certificates it issued (server, admin) in the new database.
func initializeCA(_ initializer: CAInitializer) async throws -> SQLiteAuthorityStore {
    let issued = try initializer.run()
    let store = try SQLiteAuthorityStore(path: initializer.files.database)
    try await record(issued, in: store)
    return store
}

/// The same, recording in `store` (a PostgreSQL database), which must hold no certificate yet:
/// one database belongs to one CA.
func initializeCA(_ initializer: CAInitializer, in store: any AuthorityStore) async throws {
    guard try await store.countCertificates(CertificateQuery(now: Date(), limit: 1)) == 0 else {
        throw CLIError("the database already holds certificates: another CA's (use a new, empty database)")
    }
    try await record(try initializer.run(), in: store)
}

private func record(_ issued: [CertificateRecord], in store: any AuthorityStore) async throws {
    for record in issued {
        try await store.insertCertificate(record, audit: AuditEntry(
            time: record.issuedAt, actor: "local", action: .issue, subject: record.serial, peer: "local",
            detail: "\(record.spiffeID) (ca init)"))
    }
}
