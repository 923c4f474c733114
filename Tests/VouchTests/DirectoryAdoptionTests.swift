import Foundation
import Testing
@testable import vouch
import VouchAuthority
import VouchCrypto

/// The issuer commands and `ca init` adopt the CA directory's pair into a database that names
/// no issuer yet, but never into another CA's database: a mistyped --dir or --database must not
/// plant a foreign root there.
@Suite("Adopting the directory's issuers")
struct DirectoryAdoptionTests {
    /// A fresh CA directory and the certificates `ca init` issued, recorded in an in-memory store.
    static func directory() throws -> (files: CAFiles, store: InMemoryAuthorityStore, records: [CertificateRecord]) {
        let files = CAFiles(directory: try temporaryDirectory() + "/ca")
        let records = try CAInitializer(files: files, trustDomain: "example.org", passphrase: nil).run()
        return (files, InMemoryAuthorityStore(), records)
    }

    static func record(_ records: [CertificateRecord], in store: InMemoryAuthorityStore) async throws {
        for record in records {
            try await store.insertCertificate(record, audit: AuditEntry(time: Date(), actor: "local", action: .issue,
                                                                        subject: record.serial, peer: "local", detail: ""))
        }
    }

    @Test("its own database: the pair is adopted once, active")
    func ownDatabase() async throws {
        let ca = try Self.directory()
        defer { Self.remove(ca.files) }
        try await Self.record(ca.records, in: ca.store)
        try await adoptDirectoryIssuers(files: ca.files, store: ca.store)
        try await adoptDirectoryIssuers(files: ca.files, store: ca.store)
        #expect(try await ca.store.issuers().issuers.map { "\($0.kind.rawValue) \($0.state.rawValue)" } == ["root active", "intermediate active"])
    }

    @Test("another CA's database, before or after its issuers were adopted: refused, nothing adopted")
    func anotherCAsDatabase() async throws {
        let mine = try Self.directory(), theirs = try Self.directory()
        defer { Self.remove(mine.files); Self.remove(theirs.files) }
        try await Self.record(theirs.records, in: theirs.store)
        let refusal = "\(mine.files.rootCertificate) is not a root of this database: the directory and the database belong to different CAs"
        let before = await #expect(throws: CLIError.self) { try await adoptDirectoryIssuers(files: mine.files, store: theirs.store) }
        #expect(before?.description == refusal)
        #expect(try await theirs.store.issuers().issuers.isEmpty, "nothing adopted")
        try await adoptDirectoryIssuers(files: theirs.files, store: theirs.store)
        let after = await #expect(throws: CLIError.self) { try await adoptDirectoryIssuers(files: mine.files, store: theirs.store) }
        #expect(after?.description == refusal)
    }

    static func remove(_ files: CAFiles) {
        try? FileManager.default.removeItem(at: files.directory.deletingLastPathComponent())
    }
}
