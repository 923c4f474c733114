import Foundation
import VouchCrypto
import XCTest

/// The agent's output directory on a small tmpfs that fills up or turns
/// read-only: the old files stay whole, the old certificate is served, and the
/// agent recovers by itself. Needs root (mount); skipped otherwise.
final class AgentDiskFaultTests: XCTestCase {

    /// One agent on its own tmpfs, and the fault its directory gets.
    struct Case {
        let fault: String
        /// What the failed write reports.
        let error: String
        let out: String
        let agent: AgentProcess
        let first: String
        let failuresBefore: Int
    }

    func testFullThenReadOnlyOutputDirectoryKeepsTheOldIdentityAndRecovers() async throws {
        let ca = try CAFixture()
        var mounts: [String] = []
        defer { for out in mounts { _ = try? sh("umount -l '\(out)'") } }
        func onDisk(_ out: String) throws -> (serial: String, matches: Bool) {
            let leaf = try X509Certificate(pem: String(contentsOfFile: out + "/svid.pem", encoding: .utf8))
            let key = try PrivateKey(pem: String(contentsOfFile: out + "/svid_key.pem", encoding: .utf8))
            return (leaf.serialHex, leaf.matches(key))
        }
        func failures(_ agent: AgentProcess, _ error: String) -> Int {
            agent.log.split(separator: "\n").filter { $0.contains("could not write the new certificate") && $0.contains(error) }.count
        }

        // Both faults at once, each with its own agent: a 5 s certificate renewed at 0.3 of its
        // life (the CA backdates a tenth) falls due about a second after enrollment, time enough to
        // break the directory first (a renewal that still came before counts as the old
        // certificate: it is read once the fault is in place); the retry after a failure comes
        // within --max-backoff.
        var cases: [Case] = []
        defer { cases.forEach { $0.agent.stop() } }
        for (fault, error) in [("full", "No space left on device"), ("read-only", "Read-only file system")] {
            let out = ca.root + "/agentfs-\(fault)"
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            guard try sh("mount -t tmpfs -o size=512k tmpfs '\(out)'").status == 0 else {
                throw XCTSkip("needs permission to mount a tmpfs")
            }
            mounts.append(out)
            let tokenFile = ca.root + "/token-\(fault)"
            try ca.createToken(spiffeID: "spiffe://example.org/svc/web", dns: ["localhost"], ips: ["127.0.0.1"])
                .write(toFile: tokenFile, atomically: true, encoding: .utf8)
            let agent = try AgentProcess(arguments: ca.agentArguments(out: out, ttl: "5s")
                + ["--token-file", tokenFile, "--renew-fraction", "0.3", "--max-backoff", "1s"])
            if fault == "full" {
                _ = try sh("dd if=/dev/zero of='\(out)/filler' bs=4k 2>/dev/null")  // stops at ENOSPC
            } else {
                XCTAssertEqual(try sh("mount -o remount,ro '\(out)'").status, 0)
            }
            cases.append(Case(fault: fault, error: error, out: out, agent: agent, first: try onDisk(out).serial,
                              failuresBefore: failures(agent, error)))
        }

        for test in cases {
            // The renewal falls due and cannot be written.
            XCTAssertTrue(eventually(timeout: 10) { failures(test.agent, test.error) > test.failuresBefore }, "\(test.fault): \(test.agent.log)")
            let during = try onDisk(test.out)
            XCTAssertEqual(during.serial, test.first, "\(test.fault): the old certificate stays on disk")
            XCTAssertTrue(during.matches, "\(test.fault): key and certificate on disk still belong together")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: test.out).filter { $0.contains(".tmp-") }
            XCTAssertEqual(leftovers, [], "\(test.fault): no temp files left behind")
            XCTAssertEqual(try served(test.agent, ca: ca), test.first, "\(test.fault): the listener serves the old certificate")
        }
        for test in cases {
            if test.fault == "full" {
                try FileManager.default.removeItem(atPath: test.out + "/filler")
            } else {
                XCTAssertEqual(try sh("mount -o remount,rw '\(test.out)'").status, 0)
            }
        }
        for test in cases {
            XCTAssertTrue(eventually(timeout: 10) { (try? onDisk(test.out).serial) != test.first },
                          "\(test.fault): recovered by itself: \(test.agent.log)")
            XCTAssertTrue(try onDisk(test.out).matches)
            XCTAssertTrue(test.agent.process.isRunning)
            // Retries wrote the certificate the CA had issued; they did not renew again (the CA
            // lets a renewed certificate renew only once more).
            XCTAssertFalse(test.agent.log.contains("only the newest certificate of a lineage"), "\(test.fault): \(test.agent.log)")
        }
    }

    /// The serial of the certificate the agent's listener presents.
    func served(_ agent: AgentProcess, ca: CAFixture) throws -> String {
        let result = try openssl(["s_client", "-connect", agent.address, "-alpn", "h2",
                                  "-cert", ca.caDir + "/admin.pem", "-key", ca.caDir + "/admin_key.pem"], stdin: Data())
        return try X509Certificate(pem: result.stdout).serialHex
    }
}
