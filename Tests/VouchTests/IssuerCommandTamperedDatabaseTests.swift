import Foundation
import VouchAuthority
import VouchCrypto
import VouchSQLiteStore
import XCTest

/// The issuer commands do not take the database at its word either: with a root planted in it (no
/// endorsement by a root the CA trusts) every command refuses, naming that row, before it reports
/// a rollover that is not one, activates anything or exports DIR/bundle.pem (which operators hand
/// to static verifiers and new agents).
final class IssuerCommandTamperedDatabaseTests: XCTestCase {
    func testAPlantedRootNeverReachesTheExportedBundle() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-tampered-\(UUID().uuidString)").path
        let dir = root + "/ca"
        XCTAssertEqual(try vouch("ca", "init", "--dir", dir, "--trust-domain", "example.org").status, 0)
        XCTAssertEqual(try vouch("ca", "root", "status", "--dir", dir).status, 0)  // adopts the pair
        let planted = try await plantedRoot(in: dir)
        for stage in [["intermediate", "rotate"], ["root", "prepare"], ["root", "status"], ["root", "activate", "--force"], ["root", "retire", "--force"]] {
            let run = try execute(VouchBinary.path, ["ca"] + stage + ["--dir", dir])
            XCTAssertEqual(run.status, 1, "\(stage): \(run.stdout)")
            XCTAssertTrue(run.stderr.contains("issuer \(planted.serialHex): no root this CA trusts endorses it"), "\(stage): \(run.stderr)")
        }
        let bundle = try X509Certificate.all(inPEM: String(contentsOfFile: dir + "/bundle.pem", encoding: .utf8))
        XCTAssertFalse(bundle.contains { $0.der == planted.der }, "the planted root was exported to bundle.pem")
    }

    /// A pending root of the writer's own, inserted as `vouch ca root prepare` would insert one (the
    /// store is released on return: the commands open the file themselves).
    func plantedRoot(in dir: String) async throws -> X509Certificate {
        let store = try SQLiteAuthorityStore(path: dir + "/vouch.db")
        let key = try PrivateKey(generating: .p256), now = Date()
        let planted = try CertificateSigner.selfSigned(key: key, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", "Vouch Root CA")],
            notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(86400)))
        let snapshot = try await store.issuers()
        _ = try await store.changeIssuers(IssuerChange(inserts: [.init(IssuerRecord(
            kind: .root, state: .pending, serial: planted.serialHex, der: planted.der, notBefore: planted.notBefore,
            notAfter: planted.notAfter, keyRef: IssuerRecord.offlineKeyRef, createdAt: now))]),
            expectedGeneration: snapshot.generation, audit: [])
        return planted
    }
}
