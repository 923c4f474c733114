import Foundation
import VouchCrypto
import XCTest

/// The agent's output directory on a small tmpfs that fills up or turns
/// read-only: the old files stay whole, the old certificate is served, and the
/// agent recovers by itself. Needs root (mount); skipped otherwise.
final class AgentDiskFaultTests: XCTestCase {
    func sh(_ command: String) throws -> CommandResult { try execute("/bin/sh", ["-c", command]) }

    func testFullThenReadOnlyOutputDirectoryKeepsTheOldIdentityAndRecovers() async throws {
        let ca = try CAFixture()
        let out = ca.root + "/agentfs"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        guard try sh("mount -t tmpfs -o size=512k tmpfs '\(out)'").status == 0 else {
            throw XCTSkip("needs permission to mount a tmpfs")
        }
        defer { _ = try? sh("umount -l '\(out)'") }

        let tokenFile = ca.root + "/token"
        try ca.createToken(spiffeID: "spiffe://example.org/svc/web", dns: ["localhost"], ips: ["127.0.0.1"])
            .write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let agent = try AgentProcess(arguments: ca.agentArguments(out: out, ttl: "12s") + ["--token-file", tokenFile, "--max-backoff", "1s"])
        defer { agent.stop() }

        func onDisk() throws -> (serial: String, matches: Bool) {
            let leaf = try X509Certificate(pem: String(contentsOfFile: out + "/svid.pem", encoding: .utf8))
            let key = try PrivateKey(pem: String(contentsOfFile: out + "/svid_key.pem", encoding: .utf8))
            return (leaf.serialHex, leaf.matches(key))
        }
        let first = try onDisk().serial

        for fault in ["full", "read-only"] {
            let before = try onDisk().serial
            let failuresBefore = agent.log.components(separatedBy: "renewal failed").count
            if fault == "full" {
                _ = try sh("dd if=/dev/zero of='\(out)/filler' bs=4k 2>/dev/null")  // stops at ENOSPC
            } else {
                XCTAssertEqual(try sh("mount -o remount,ro '\(out)'").status, 0)
            }
            // A renewal falls due (~8 s) and cannot be written.
            XCTAssertTrue(eventually(timeout: 15) { agent.log.components(separatedBy: "renewal failed").count > failuresBefore },
                          "\(fault): \(agent.log)")
            let during = try onDisk()
            XCTAssertEqual(during.serial, before, "\(fault): the old certificate stays on disk")
            XCTAssertTrue(during.matches, "\(fault): key and certificate on disk still belong together")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.contains(".tmp-") }
            XCTAssertEqual(leftovers, [], "\(fault): no temp files left behind")

            if fault == "full" {
                try FileManager.default.removeItem(atPath: out + "/filler")
            } else {
                XCTAssertEqual(try sh("mount -o remount,rw '\(out)'").status, 0)
            }
            XCTAssertTrue(eventually(timeout: 10) { (try? onDisk().serial) != before }, "\(fault): recovered by itself: \(agent.log)")
            XCTAssertTrue(try onDisk().matches)
        }
        XCTAssertNotEqual(try onDisk().serial, first)
        XCTAssertTrue(agent.process.isRunning)
    }
}
