import Foundation
import Testing
import VouchAuthority
import VouchCrypto
import VouchPostgresStore

/// Replicas sharing a PostgreSQL database follow an intermediate rotation whose key is stored
/// encrypted in the database: no file to copy, and a replica without the passphrase says so.
@Suite("Issuers on PostgreSQL")
struct IssuerPostgresTests {
    @Test func replicasSwitchToAnIntermediateWhoseKeyIsInTheDatabase() async throws {
        let database = try await TestPostgres.shared.freshDatabase()
        func connect() async throws -> PostgresAuthorityStore {
            try await PostgresAuthorityStore.connect(host: database.host, port: database.port, user: database.user,
                                                     password: nil, database: database.database, tls: .disable)
        }
        let world = try IssuerWorld(store: try await connect())
        try await world.authority.start()
        let other = try world.replica(store: try await connect())
        let withoutPassphrase = try world.replica(store: try await connect(), passphrase: nil)
        try await other.start()
        try await withoutPassphrase.start()
        let old = try await world.enroll("spiffe://example.org/svc/old")
        _ = try await world.authority.revoke(serial: old.record.serial, reason: 1, caller: IssuerWorld.admin)

        let rotated = try await world.rotate()
        #expect(try await other.reloadIssuers())
        #expect(other.issuerSet.active.serial == rotated.certificate.serialHex)
        #expect(other.signingIssuerWarning == nil)
        let token = try await world.token("spiffe://example.org/svc/new")
        let csr = try CertificateSigningRequest.create(key: try PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames()).der
        let fresh = try await other.enroll(token: token, csr: csr, ttlSeconds: 0, caller: Caller(credential: .none, peer: "local"))
        #expect(try X509Certificate(der: fresh.record.der).isSigned(by: rotated.certificate))
        #expect(try await world.store.certificate(serial: fresh.record.serial)?.issuerID == other.issuerSet.active.record.id)

        // Each intermediate's CRL from the other replica lists its own revocations only.
        let retiring = try CertificateRevocationList(der: try await other.currentCRL(issuer: world.material.intermediate.serialHex).der)
        #expect(retiring.isSigned(by: world.material.intermediate))
        #expect(retiring.entries.map { SerialNumber.hex($0.serial) } == [old.record.serial])
        let active = try CertificateRevocationList(der: try await other.currentCRL().der)
        #expect(active.isSigned(by: rotated.certificate) && active.entries.isEmpty)

        #expect(try await withoutPassphrase.reloadIssuers())
        #expect(withoutPassphrase.issuerSet.active.serial == world.material.intermediate.serialHex)
        #expect(withoutPassphrase.signingIssuerWarning == "cannot load the key of issuer \(rotated.certificate.serialHex): its key is stored "
            + "encrypted in the database: pass --passphrase-file or set VOUCH_CA_PASSPHRASE; signing with \(world.material.intermediate.serialHex)")
    }
}
