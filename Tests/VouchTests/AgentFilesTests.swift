import Foundation
@testable import VouchAgent
import VouchCrypto
import VouchFiles
import VouchTLS
import XCTest

/// The files the agent writes for servers besides its own four: fullchain.pem, crl.pem, and on
/// request combined (fullchain + key), a PKCS#12 keystore and truststore; their names (`--file
/// KIND=NAME`), the refusals of bad names, and one atomic set per change.
final class AgentFilesTests: XCTestCase {
    private func read(_ out: String, _ name: String) throws -> String { try String(contentsOfFile: out + "/" + name, encoding: .utf8) }

    private func mode(_ out: String, _ name: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: out + "/" + name)[.posixPermissions] as? Int) ?? -1
    }

    private func exists(_ out: String, _ name: String) -> Bool { FileManager.default.fileExists(atPath: out + "/" + name) }

    func testDefaultFilesThenNamedKindsWrittenFromDiskAtRestart() throws {
        let ca = try CAFixture()
        let (agent, out) = try ca.startAgent(ttl: "1h", extra: ["--file", "crl="])
        XCTAssertTrue(eventually(timeout: 5) { self.exists(out, "crl.der") }, agent.log)
        let svid = try read(out, "svid.pem"), chain = try read(out, "chain.pem"), key = try read(out, "svid_key.pem")
        XCTAssertEqual(try read(out, "fullchain.pem"), svid + chain, "fullchain.pem is svid.pem followed by chain.pem")
        XCTAssertEqual(try mode(out, "fullchain.pem"), 0o644)
        for name in ["crl.pem", "combined.pem"] { XCTAssertFalse(exists(out, name), "\(name) is off") }
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: out).contains { $0.hasSuffix(".p12") })
        agent.stop()

        // The same identity, other names: the new files are written at start from the files on disk
        // (AgentProcess returns once the listener is up, after that write).
        let password = ca.root + "/p12-password"
        try "s3cret pass\n".write(toFile: password, atomically: true, encoding: .utf8)
        let again = try AgentProcess(arguments: ca.agentArguments(out: out, ttl: "1h") + [
            "--file", "fullchain=server.pem", "--file", "combined=client.pem", "--pkcs12", "keystore.p12",
            "--truststore", "truststore.p12", "--pkcs12-password-file", password])
        defer { again.stop() }
        XCTAssertEqual(try read(out, "server.pem"), svid + chain)
        XCTAssertEqual(try read(out, "client.pem"), svid + chain + key, "combined is the full chain followed by the key")
        XCTAssertEqual(try mode(out, "client.pem"), 0o600)
        XCTAssertEqual(try mode(out, "keystore.p12"), 0o600)
        XCTAssertEqual(try mode(out, "truststore.p12"), 0o644)
        let crlDER = try XCTUnwrap(FileManager.default.contents(atPath: out + "/crl.der"))
        XCTAssertTrue(try read(out, "crl.pem").contains(PEM.encode(Array(crlDER), label: "X509 CRL")), "crl.pem, back on, holds crl.der")

        // Java's own tool reads both with the password (its trailing newline stripped).
        let keystore = try execute("/usr/bin/keytool", ["-list", "-v", "-keystore", out + "/keystore.p12", "-storepass", "s3cret pass"])
        XCTAssertEqual(keystore.status, 0, keystore.stdout + keystore.stderr)
        for line in ["Alias name: vouch", "Entry type: PrivateKeyEntry", "Certificate chain length: 2"] {
            XCTAssertTrue(keystore.stdout.contains(line), "\(line) in \(keystore.stdout)")
        }
        let truststore = try execute("/usr/bin/keytool", ["-list", "-keystore", out + "/truststore.p12", "-storepass", "s3cret pass"])
        XCTAssertTrue(truststore.stdout.contains("Your keystore contains 1 entry"), truststore.stdout + truststore.stderr)
        XCTAssertTrue(truststore.stdout.contains("trustedCertEntry"), truststore.stdout)
        let info = try openssl(["pkcs12", "-info", "-nokeys", "-in", out + "/keystore.p12", "-passin", "file:" + password])
        XCTAssertEqual(info.status, 0, info.stderr)
        XCTAssertTrue(info.stderr.contains("MAC: sha256"), info.stderr)
        XCTAssertTrue(info.stderr.contains("PBES2, PBKDF2, AES-256-CBC"), info.stderr)
    }

    func testBadNamesAreRefusedWithTheReason() throws {
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let empty = root + "/empty", base = ["agent", "--ca", "127.0.0.1:1", "--ca-bundle", root + "/bundle.pem", "--out", root + "/out"]
        try "\n".write(toFile: empty, atomically: true, encoding: .utf8)
        // OpenSSL takes the password as a C string: a leading NUL would make it empty, bytes that
        // are not UTF-8 would not be the file's bytes, an inner newline is not one line.
        let nul = root + "/nul", binary = root + "/binary", twoLines = root + "/two-lines"
        try Data([0] + Array("longsecretpassword\n".utf8)).write(to: URL(fileURLWithPath: nul))
        try Data([0xff, 0xfe, 0x80, 0x81, 0x90, 0xa0, 0xc0, 0xf8]).write(to: URL(fileURLWithPath: binary))
        try "first\nsecond\n".write(toFile: twoLines, atomically: true, encoding: .utf8)
        let cases: [([String], String)] = [
            (["--file", "cert=x.pem"], "unknown --file kind cert (certificate, key, chain, fullchain, bundle, crl, combined, pkcs12, truststore)"),
            (["--file", "fullchain=chain.pem"], "--file: chain and fullchain both name chain.pem"),
            (["--file", "fullchain=../web/full.pem"], "--file fullchain=../web/full.pem: NAME must be a plain file name in --out (no '/')"),
            (["--file", "key="], "--file key= cannot turn off key"),
            (["--file", "fullchain"], "--file fullchain: expected KIND=NAME"),
            (["--file", "fullchain=crl.der"], "crl.der is a file the agent keeps for itself"),
            (["--pkcs12", "keystore.p12"], "--pkcs12 needs --pkcs12-password-file"),
            (["--truststore", "trust.p12", "--pkcs12-password-file", empty], "--pkcs12-password-file \(empty) is empty"),
            (["--pkcs12-password-file", empty], "--pkcs12-password-file is only used with --pkcs12 or --truststore"),
        ] + [nul, binary, twoLines].map {
            (["--pkcs12", "k.p12", "--pkcs12-password-file", $0], "--pkcs12-password-file \($0) must hold one line of UTF-8 text without control characters")
        }
        for (flags, message) in cases {
            let result = try execute(VouchBinary.path, base + flags)
            XCTAssertEqual(result.status, 1, "\(flags)")
            XCTAssertTrue(result.stderr.contains(message), "\(flags): \(result.stderr)")
        }
        // The config file's agent.files takes the same kinds.
        let config = root + "/vouch.yaml"
        try "agent:\n  files:\n    fulchain: full.pem\n".write(toFile: config, atomically: true, encoding: .utf8)
        let fromFile = try execute(VouchBinary.path, base + ["--config", config])
        XCTAssertTrue(fromFile.stderr.contains("unknown --file kind fulchain (certificate, "), fromFile.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/out"), "nothing written")
    }

    /// Each write carries the derived files of the inputs it changes, before svid.pem: a renewal the
    /// full chain, combined and keystore; a CRL crl.pem; a bundle the truststore. Nothing else.
    func testEachSetCarriesTheDerivedFilesOfItsInputsWithTheCertificateLast() throws {
        let world = try RolloverWorld()
        let files = IdentityFiles(directory: world.files.directory,
                                  names: try OutputFileNames.defaults.applying(["combined=client.pem", "pkcs12=k.p12", "truststore=t.p12"]),
                                  keystorePassword: "pw")
        let derived = DerivedFiles(files: files)
        try AtomicFile.writeAll(try derived.completing([], force: true))
        func names(_ set: DerivedFiles.FileSet) -> [String] { set.map { ($0.path as NSString).lastPathComponent } }

        let key = try PrivateKey(generating: .p256)
        let leaf = try RolloverWorld.leaf(RolloverWorld.agentID, key: key, under: world.i1)
        let renewal = try derived.completing([(files.chain, Array(pemBundle([world.i1.certificate]).utf8), 0o644),
                                              (files.key, Array(key.pkcs8PEM().utf8), 0o600), (files.certificate, Array(leaf.pem.utf8), 0o644)])
        XCTAssertEqual(names(renewal), ["chain.pem", "svid_key.pem", "fullchain.pem", "client.pem", "k.p12", "svid.pem"])
        let combined = Array((try leaf.pem + pemBundle([world.i1.certificate]) + key.pkcs8PEM()).utf8)
        XCTAssertEqual(renewal.first { $0.path.hasSuffix("/client.pem") }?.bytes, combined)

        let crl = try world.i1.makeCRL(entries: [], number: 1, thisUpdate: Date(), nextUpdate: Date().addingTimeInterval(3600))
        let crlSet = try derived.completing([(files.directory + "/crl.der", crl, 0o644)])
        XCTAssertEqual(names(crlSet), ["crl.der", "crl.pem"])
        XCTAssertEqual(crlSet.last?.bytes, Array(PEM.encode(crl, label: "X509 CRL").utf8))

        let bundle = try derived.completing([(files.bundle, Array(pemBundle([world.r1.certificate, world.r2.certificate]).utf8), 0o644)])
        XCTAssertEqual(names(bundle), ["bundle.pem", "t.p12"])
    }

    /// A CRL change rewrites crl.der and crl.pem (and the rest of the set) in one write: on a full
    /// disk none of them changes and no temp file stays; once there is room both are written.
    func testFullDiskLeavesEveryFileOfTheSetAsItWas() async throws {
        let ca = try CAFixture()
        let out = ca.root + "/agentfs"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        guard try sh("mount -t tmpfs -o size=512k tmpfs '\(out)'").status == 0 else { throw XCTSkip("needs permission to mount a tmpfs") }
        defer { _ = try? sh("umount -l '\(out)'") }
        let password = ca.root + "/pw"
        try "pw".write(toFile: password, atomically: true, encoding: .utf8)
        let tokenFile = ca.root + "/token"
        try ca.createToken(spiffeID: "spiffe://example.org/svc/web").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let agent = try AgentProcess(arguments: ca.agentArguments(out: out, ttl: "1h") + [
            "--token-file", tokenFile, "--crl-refresh", "1s", "--file", "combined=client.pem", "--pkcs12", "keystore.p12",
            "--pkcs12-password-file", password])
        defer { agent.stop() }
        XCTAssertTrue(eventually(timeout: 5) { (try? self.read(out, "crl.pem"))?.components(separatedBy: "BEGIN X509 CRL").count == 3 },
                      "crl.pem holds the intermediate's and the root's CRL: \(agent.log)")
        func snapshot() throws -> [String: Data] {
            Dictionary(uniqueKeysWithValues: try FileManager.default.contentsOfDirectory(atPath: out).map {
                ($0, FileManager.default.contents(atPath: out + "/" + $0) ?? Data())
            })
        }
        _ = try sh("dd if=/dev/zero of='\(out)/filler' bs=4k 2>/dev/null")  // stops at ENOSPC
        // Taken once the disk is full: nothing written after this point can have succeeded.
        var before = try snapshot()
        before["filler"] = nil

        let other = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/other"), key: try PrivateKey(generating: .p256))
        let serial = try X509Certificate(der: Array(other.certificate)).serialHex
        XCTAssertEqual(try vouch("cert", "revoke", serial, "--dir", ca.caDir, "--server", ca.server.address).status, 0)
        XCTAssertTrue(eventually(timeout: 5) { agent.log.contains("CRL refresh failed") && agent.log.contains("No space left on device") }, agent.log)
        var during = try snapshot()
        during["filler"] = nil
        XCTAssertEqual(during, before, "no file of the set changed, no temp file left")

        try FileManager.default.removeItem(atPath: out + "/filler")
        XCTAssertTrue(eventually(timeout: 5) {
            guard let der = FileManager.default.contents(atPath: out + "/crl.der"), der != before["crl.der"] else { return false }
            return (try? self.read(out, "crl.pem"))?.contains(PEM.encode(Array(der), label: "X509 CRL")) == true
        }, "crl.der and crl.pem written together once there is room: \(agent.log)")
    }
}
