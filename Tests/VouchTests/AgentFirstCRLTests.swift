import Foundation
import Synchronization
import VouchAPI
@testable import VouchAgent
import VouchCrypto
@testable import VouchTLS
import X509
import XCTest

/// A server started the moment svid.pem appears must find crl.pem complete: nginx refuses to start
/// on an empty `ssl_crl` file, HAProxy's reload fails on an empty `crl-file`, and a crl.pem without
/// the root's CRL makes them refuse every client. The agent fetches its new identity's CRLs first
/// and writes them in the same set as svid.pem.
final class AgentFirstCRLTests: XCTestCase {
    func testFirstSVIDAppearsWithACompleteCRLFile() throws {
        let ca = try CAFixture()
        let out = ca.root + "/agent", seen = ca.root + "/first"
        try FileManager.default.createDirectory(atPath: seen, withIntermediateDirectories: true)
        // Polls from before the agent starts: copies the files at the first moment svid.pem exists.
        let copied = FirstCopy()
        let watcher = Thread {
            let names = ["svid.pem", "crl.pem", "chain.pem", "bundle.pem"]
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                if let svid = FileManager.default.contents(atPath: out + "/svid.pem") {
                    let files = [svid] + names.dropFirst().map { FileManager.default.contents(atPath: out + "/" + $0) ?? Data() }
                    for (name, data) in zip(names, files) { try? data.write(to: URL(fileURLWithPath: seen + "/" + name)) }
                    copied.done.withLock { $0 = true }
                    return
                }
                usleep(1000)
            }
            copied.done.withLock { $0 = false }
        }
        watcher.start()
        let (agent, _) = try ca.startAgent(ttl: "1h")
        defer { agent.stop() }
        XCTAssertTrue(eventually(timeout: 10) { copied.done.withLock { $0 } != nil })
        XCTAssertEqual(copied.done.withLock { $0 }, true, agent.log)

        func count(_ label: String, _ name: String) -> Int {
            ((try? String(contentsOfFile: seen + "/" + name, encoding: .utf8)) ?? "").components(separatedBy: "-----BEGIN \(label)-----").count - 1
        }
        let expected = count("CERTIFICATE", "chain.pem") + count("CERTIFICATE", "bundle.pem")
        XCTAssertEqual(expected, 2, "one intermediate, one root")
        XCTAssertEqual(count("X509 CRL", "crl.pem"), expected, "a CRL per certificate of chain.pem and bundle.pem, with the first svid.pem: \(agent.log)")
        let verified = try openssl(["verify", "-crl_check_all", "-CAfile", seen + "/bundle.pem", "-untrusted", seen + "/chain.pem",
                                    "-CRLfile", seen + "/crl.pem", seen + "/svid.pem"])
        XCTAssertEqual(verified.stdout, "\(seen)/svid.pem: OK\n", verified.stderr)
        XCTAssertFalse(agent.log.contains("writing the new certificate without the CRL"), agent.log)
    }

    /// A renewal under an intermediate whose CRL the agent does not hold yet (the CA rotated) writes
    /// that CRL with the certificate; the CRL crl.der held moves to its issuer's name in the same set.
    /// A renewal under a held intermediate asks the CA nothing.
    func testRenewalUnderANewIntermediateWritesItsCRLWithTheCertificate() async throws {
        let world = try RolloverWorld()
        let out = world.files.directory
        func crl(_ signer: CertificateSigner, number: Int64 = 1) throws -> [UInt8] {
            try signer.makeCRL(entries: [], number: number, thisUpdate: Date().addingTimeInterval(-60), nextUpdate: Date().addingTimeInterval(3600))
        }
        let i1CRL = try crl(world.i1), i2CRL = try crl(world.i2)
        var prepared = world.prepared
        prepared.rootCRLs = [try crl(world.r1), try crl(world.r2)]
        await world.apply(prepared)
        let crls = ScriptedIssuerCRLs()
        crls.set(["": i1CRL])
        let follower = RevocationFollower(files: world.files, replicas: CAReplicas(CAAddressList(HostPort(host: "127.0.0.1", port: 1)), logger: world.log.logger),
                                          source: crls, refreshInterval: .seconds(60), clock: SystemAgentClock(), logger: world.log.logger)
        try await follower.refreshCRL()
        crls.set(["": i2CRL])

        let key = try PrivateKey(generating: .p256)
        let leaf = try RolloverWorld.leaf(RolloverWorld.agentID, key: key, under: world.i2)
        let identity = VerifiedIdentity(leaf: try Certificate(derEncoded: leaf.der),
                                        intermediates: try [world.i2.certificate, world.cross].map { try Certificate(derEncoded: $0.der) })
        let fetched = await follower.crls(for: identity, roots: [], enrolling: false)
        XCTAssertEqual(crls.asked, [""], "the active issuer's CRL, which I2 signed")
        XCTAssertEqual(Set(fetched.files.map { ($0.path as NSString).lastPathComponent }), ["crl.der", "crl-\(world.i1.certificate.serialHex).der"])
        try IdentityWriter(files: world.files).write(identity, key: key, bundlePEM: nil, crls: fetched)
        fetched.adopt()
        let crlPEM = try String(contentsOfFile: out + "/crl.pem", encoding: .utf8)
        for der in [i1CRL, i2CRL] + prepared.rootCRLs { XCTAssertTrue(crlPEM.contains(PEM.encode(der, label: "X509 CRL"))) }
        let verified = try openssl(["verify", "-crl_check_all", "-CAfile", out + "/bundle.pem", "-untrusted", out + "/chain.pem",
                                    "-CRLfile", out + "/crl.pem", out + "/svid.pem"])
        XCTAssertEqual(verified.stdout, "\(out)/svid.pem: OK\n", verified.stderr)

        crls.set(["": i2CRL])
        let again = await follower.crls(for: identity, roots: [], enrolling: false)
        XCTAssertTrue(again.files.isEmpty)
        XCTAssertEqual(crls.asked, [], "I2's CRL is held now")

        // A newer CRL saved meanwhile (pushed while the set was fetched, or while the disk refused
        // it) is never replaced by the older one the set carries; the identity is written all the same.
        let newer = try crl(world.i2, number: 2)
        try Data(newer).write(to: URL(fileURLWithPath: out + "/crl.der"))
        try IdentityWriter(files: world.files).write(identity, key: key, bundlePEM: nil, crls: fetched)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/crl.der")), Data(newer), "CRL 2 stays; CRL 1 is not written over it")
        XCTAssertTrue(try String(contentsOfFile: out + "/crl.pem", encoding: .utf8).contains(PEM.encode(newer, label: "X509 CRL")))
    }

    /// A CA that cannot give the CRLs does not hold the identity back: it is written without them and
    /// the agent names each missing issuer.
    func testEnrollmentWithoutTheCRLsNamesEachMissingIssuer() async throws {
        let world = try RolloverWorld()
        let crls = ScriptedIssuerCRLs()
        let follower = RevocationFollower(files: world.files, replicas: CAReplicas(CAAddressList(HostPort(host: "127.0.0.1", port: 1)), logger: world.log.logger),
                                          source: crls, refreshInterval: .seconds(60), clock: SystemAgentClock(), logger: world.log.logger)
        let key = try PrivateKey(generating: .p256)
        let leaf = try RolloverWorld.leaf(RolloverWorld.agentID, key: key, under: world.i1)
        let identity = VerifiedIdentity(leaf: try Certificate(derEncoded: leaf.der), intermediates: [try Certificate(derEncoded: world.i1.certificate.der)])
        let root = try Certificate(derEncoded: world.r1.certificate.der)
        let fetched = await follower.crls(for: identity, roots: [root], enrolling: true)
        XCTAssertTrue(fetched.files.isEmpty)
        let i1 = world.i1.certificate.serialHex, r1 = world.r1.certificate.serialHex
        XCTAssertEqual(crls.asked, ["", r1])
        XCTAssertEqual(world.log.lines.filter { $0.contains(RevocationFollower.missingIdentityCRLs(["intermediate \(i1)", "root \(r1)"])) }.count, 1,
                       "\(world.log.lines)")
    }
}

/// Whether the watcher copied the first set (nil while it still polls).
private final class FirstCopy: Sendable {
    let done = Mutex<Bool?>(nil)
}
