import Foundation
import Synchronization
import Testing
import VouchAPI
import VouchAuthority
import VouchCrypto
import VouchSQLiteStore

/// The listener's own certificate when the database will not record it: server.pem is served and
/// the server says so, then a certificate of its own once the database takes it.
struct ServerListenerIdentityTests {
    @Test func withTheDatabaseRefusingTheRecordItServesServerPemSaysSoAndRecovers() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let files = CAFiles(directory: directory)
        _ = try CAInitializer(files: files, trustDomain: "example.org", passphrase: nil).run()
        let database = directory + "/vouch.db"
        let store = try SQLiteAuthorityStore(path: database)
        let authority = CertificateAuthority(store: store, material: try CAMaterial.load(from: files, passphrase: nil),
                                             policy: IssuancePolicy(trustDomain: "example.org"))
        try await authority.start()
        // A certificate table the store cannot write stands in for a database that is down.
        func sql(_ statement: String) throws { #expect(try execute("/usr/bin/sqlite3", [database, statement]).status == 0) }
        try sql("ALTER TABLE certificate RENAME TO certificate_away")

        let log = CollectedLog()
        let identity = try await ServerListenerIdentity(authority: authority, store: store, files: files, lifetime: 3600,
                                                        logger: log.logger, firstRetry: 0.05, maximumRetry: 0.05)
        let bootstrap = try X509Certificate(pem: String(contentsOfFile: files.serverCertificate, encoding: .utf8))
        #expect(identity.presented.serial == bootstrap.serialHex)
        #expect(log.lines.contains { $0.contains("cannot issue a listener certificate (database unavailable?): serving server.pem") })
        let reloads = Mutex(0)
        identity.onRenewal { reloads.withLock { $0 += 1 } }
        let running = Task { await identity.run() }
        defer { running.cancel() }
        try await Task.sleep(for: .milliseconds(200))
        #expect(identity.presented.serial == bootstrap.serialHex, "still refused: still server.pem")

        try sql("ALTER TABLE certificate_away RENAME TO certificate")
        let deadline = ContinuousClock.now + .seconds(5)
        while identity.presented.serial == bootstrap.serialHex, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        let own = identity.presented.serial
        #expect(own != bootstrap.serialHex)
        #expect(reloads.withLock { $0 } == 1, "the listener was told")
        #expect(try await store.certificate(serial: own)?.spiffeID == "spiffe://example.org/vouch/server", "recorded")
    }
}

