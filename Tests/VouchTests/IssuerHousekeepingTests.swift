import Foundation
import Testing
import VouchAPI
import VouchAuthority
import VouchCrypto

/// `IssuerHousekeeping`, a server's hourly pass and start-up warning, on the in-memory store
/// of `IssuerOperationsTests` with a moved clock.
extension IssuerOperationsTests {
    func housekeeping(_ log: CollectedLog, adminIDs: Set<String> = []) -> IssuerHousekeeping {
        IssuerHousekeeping(store: store, adminIDs: adminIDs, directory: "/srv/ca", logger: log.logger, now: { [clock] in clock.now })
    }

    @Test("housekeeping retires a retiring intermediate once its last certificate has expired, not before")
    func housekeepingRetiresIdleIntermediates() async throws {
        try await agent("web", lifetime: 3600)
        let rotation = try await operations.rotateIntermediate(rootKey: rootKey, rootKeyPath: "root_key.pem", placeKey: inDatabase)
        let log = CollectedLog()
        await housekeeping(log).retireIdleIntermediates()
        #expect(try await states() == ["root active", "intermediate retiring", "intermediate active"])
        #expect(log.lines.isEmpty)

        clock.advance(3601)
        let generation = try await store.issuerGeneration()
        await housekeeping(log).retireIdleIntermediates()
        #expect(try await states() == ["root active", "intermediate retired", "intermediate active"])
        #expect(try await store.issuerGeneration() == generation + 1)
        #expect(log.lines == ["notice retired intermediate \(rotation.previous.serial): no unexpired certificate left "])
        let last = try #require(try await store.auditEvents(afterID: 0, limit: 100).last?.entry)
        #expect(last.action == "issuer.retire" && last.subject == rotation.previous.serial)
        #expect(last.detail == "retiring intermediate with no unexpired certificate retired (server housekeeping)")

        // Nothing left to do: no change, no line.
        await housekeeping(log).retireIdleIntermediates()
        #expect(try await store.issuerGeneration() == generation + 1 && log.lines.count == 1)
    }

    @Test("at start, admin certificates expiring within 30 days or chaining to a retiring root are logged with the command")
    func housekeepingWarnsAboutAdminCertificates() async throws {
        func admin(_ path: String, days: Double) async throws -> CertificateRecord {
            var record = try LocalIssuance.issue(signer: intermediateSigner, spiffeID: "spiffe://example.org/\(path)",
                                                 lifetime: days * 86400, now: clock.now).record
            record.issuerID = 2
            try await store.insertCertificate(record, audit: AuditEntry(time: clock.now, actor: "test", action: .issue,
                                                                        subject: record.serial, peer: "test", detail: ""))
            return record
        }
        let soon = try await admin("vouch/admin", days: 10), later = try await admin("ops/alice", days: 60)
        try await admin("svc/web", days: 5)
        let ids: Set = ["spiffe://example.org/vouch/admin", "spiffe://example.org/ops/alice"]
        let log = CollectedLog()
        await housekeeping(log, adminIDs: ids).warnAboutAdminCertificates()
        let command = "renew it with vouch ca admin-cert --dir /srv/ca --spiffe-id"
        #expect(log.lines == ["warning admin certificate \(soon.serial) of spiffe://example.org/vouch/admin expires at "
            + "\(soon.notAfter.formatted(.iso8601)): \(command) spiffe://example.org/vouch/admin --out <the directory of its admin.pem> "])

        _ = try await prepare()
        _ = try await operations.activateRoot(force: true)
        let afterActivation = CollectedLog()
        await housekeeping(afterActivation, adminIDs: ids).warnAboutAdminCertificates()
        let retiring = "which is retiring: \(command)"
        #expect(afterActivation.lines == [
            "warning admin certificate \(soon.serial) of spiffe://example.org/vouch/admin chains to root \(root.serialHex), \(retiring) "
                + "spiffe://example.org/vouch/admin --out <the directory of its admin.pem> ",
            "warning admin certificate \(later.serial) of spiffe://example.org/ops/alice chains to root \(root.serialHex), \(retiring) "
                + "spiffe://example.org/ops/alice --out <the directory of its admin.pem> ",
        ])
    }
}
