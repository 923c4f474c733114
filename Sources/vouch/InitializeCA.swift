import Foundation
import VouchAuthority
import VouchCrypto
import VouchFiles
import VouchSQLiteStore

/// `vouch ca init`'s work, shared with quickstart: writes the CA files, then records the
/// certificates it issued (server, admin) in the new database.
func initializeCA(_ initializer: CAInitializer) async throws -> SQLiteAuthorityStore {
    let issued = try initializer.run()
    let store = try SQLiteAuthorityStore(path: initializer.files.database)
    try await record(issued, in: store)
    try await signFirstRootCRL(initializer, in: store)
    return store
}

/// The same, recording in `store` (a PostgreSQL database), which must hold no certificate yet:
/// one database belongs to one CA.
func initializeCA(_ initializer: CAInitializer, in store: any AuthorityStore) async throws {
    guard try await store.countCertificates(CertificateQuery(now: Date(), limit: 1)) == 0 else {
        throw CLIError("the database already holds certificates: another CA's (use a new, empty database)")
    }
    try await record(try initializer.run(), in: store)
    try await signFirstRootCRL(initializer, in: store)
}

/// The root's first CRL (number 1), while `ca init` still holds the root key: servers that check
/// CRLs for the whole chain (nginx, HAProxy, PostgreSQL) refuse every client without it.
private func signFirstRootCRL(_ initializer: CAInitializer, in store: any AuthorityStore) async throws {
    let files = initializer.files
    try await adoptDirectoryIssuers(files: files, store: store)
    let key: PrivateKey, keyPath: String
    if let tokens = initializer.keyStore.tokens {
        // The root key never left its token: found again by the URI ca.json records.
        let settings = try CASettings.load(from: files)
        guard let uri = settings.rootKey else { throw CLIError("\(files.settings) names no root key") }
        (key, keyPath) = (try tokens.root.key(try TokenKeyReference(parsing: uri)), uri)
    } else {
        key = try PrivateKey(pem: try SmallFile.text(files.rootKey, limit: OperatorFile.limit), passphrase: initializer.passphrase)
        keyPath = files.rootKey
    }
    _ = try await IssuerOperations(store: store, now: initializer.now).signRootCRL(rootKey: key, keyPath: keyPath, by: "ca init")
}

private func record(_ issued: [CertificateRecord], in store: any AuthorityStore) async throws {
    for record in issued {
        try await store.insertCertificate(record, audit: AuditEntry(
            time: record.issuedAt, actor: "local", action: .issue, subject: record.serial, peer: "local",
            detail: "\(record.spiffeID) (ca init)"))
    }
}
