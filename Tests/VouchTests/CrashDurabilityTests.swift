import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// kill -9 in the middle of a burst of issuance: whatever a client received is
/// in the database, and the server comes back.
final class CrashDurabilityTests: XCTestCase {
    final class Received: @unchecked Sendable {
        private let lock = NSLock()
        private var serials: [String] = []
        private var failures = 0
        private var killed = false
        func add(_ serial: String) { lock.withLock { serials.append(serial) } }
        func fail() { lock.withLock { failures += 1 } }
        var all: [String] { lock.withLock { serials } }
        var failed: Int { lock.withLock { failures } }
        /// After the kill, calls not yet started count as failed without being made: a dead
        /// server has nothing more to show.
        func serverKilled() { lock.withLock { killed = true } }
        var failsWithoutCalling: Bool { lock.withLock { if killed { failures += 1 }; return killed } }
    }

    func testEveryCertificateAClientReceivedSurvivesSIGKILL() async throws {
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: "spiffe://example.org/svc/burst", uses: 1000)
        let tokenID = String(token.split(separator: ".")[1])
        let received = Received()
        let calls = 1000, workers = 32
        let killAfter = 200
        // Half the workers renew with an identity of their own (enrolled first, all at once), half enroll.
        let renewers = try await withThrowingTaskGroup(of: (Int, VouchClient.Credentials).self) { group in
            for worker in stride(from: 1, to: workers, by: 2) {
                group.addTask {
                    let key = try PrivateKey(generating: .p256)
                    let issued = try await ca.enroll(token: token, key: key)
                    return (worker, try ca.writeIdentity(issued, key: key, name: "worker\(worker)"))
                }
            }
            return try await group.reduce(into: [Int: VouchClient.Credentials]()) { $0[$1.0] = $1.1 }
        }
        let preEnrolled = renewers.count

        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<workers {
                group.addTask {
                    if var identity = renewers[worker] {
                        // Like an agent: each renewal on a new connection with the newest certificate,
                        // since only the newest certificate of a lineage may renew.
                        for _ in stride(from: worker, to: calls, by: workers) where !received.failsWithoutCalling {
                            do {
                                let key = try PrivateKey(generating: .p256)
                                let response = try await ca.renew(with: identity, newKey: key)
                                received.add(response.serial)
                                identity = try ca.writeIdentity(response, key: key, name: "worker\(worker)")
                            } catch {
                                received.fail()
                            }
                        }
                        return
                    }
                    // Each enrolling worker holds one connection and issues its share back to back.
                    try? await VouchClient.with(server: ca.address, credentials: ca.anonymous) { client in
                        let authority = Vouch_V1_CertificateAuthority.Client(wrapping: client)
                        for _ in stride(from: worker, to: calls, by: workers) where !received.failsWithoutCalling {
                            do {
                                var request = Vouch_V1_EnrollRequest()
                                request.token = token
                                request.csr = Data(try CertificateSigningRequest.create(
                                    key: try PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames()).der)
                                received.add(try await authority.enroll(request, options: VouchClient.options(timeout: .seconds(5))).serial)
                            } catch {
                                received.fail()
                            }
                        }
                    }
                }
            }
            group.addTask {
                while received.all.count < killAfter { try await Task.sleep(for: .milliseconds(5)) }
                ca.server.kill()
                received.serverKilled()
            }
            try await group.waitForAll()
        }
        let serials = received.all
        XCTAssertGreaterThanOrEqual(serials.count, killAfter)
        XCTAssertLessThan(serials.count, calls, "the kill landed mid-burst")
        XCTAssertEqual(serials.count + received.failed, calls)

        // Read the database file directly after the crash.
        let database = ca.caDir + "/vouch.db"
        func query(_ sql: String) throws -> [String] {
            let result = try execute("/usr/bin/sqlite3", [database, sql])
            XCTAssertEqual(result.status, 0, result.stderr)
            return result.stdout.split(separator: "\n").map(String.init)
        }
        XCTAssertEqual(try query("PRAGMA integrity_check"), ["ok"])
        let stored = Set(try query("SELECT serial FROM certificate WHERE token_id = '\(tokenID)'"))
        let missing = Set(serials).subtracting(stored)
        XCTAssertEqual(missing, [], "every certificate a client received is in the database")
        XCTAssertEqual(Set(serials).count, serials.count, "no serial handed out twice")
        XCTAssertEqual(try query("SELECT COUNT(*) - COUNT(DISTINCT serial) FROM certificate"), ["0"])
        let consumed = try query("SELECT uses_consumed FROM token WHERE id = '\(tokenID)'").first.flatMap(Int.init) ?? -1
        let enrolled = try query("SELECT COUNT(*) FROM certificate WHERE token_id = '\(tokenID)' AND renewed_from IS NULL").first.flatMap(Int.init) ?? -2
        XCTAssertEqual(consumed, enrolled, "token uses match the enrollments made with it")
        let renewals = try query("SELECT COUNT(*) FROM certificate WHERE renewed_from IS NOT NULL").first.flatMap(Int.init) ?? 0
        XCTAssertGreaterThan(renewals, 0)
        XCTAssertGreaterThan(enrolled - preEnrolled, 0)
        print("crash: \(serials.count) certificates received before SIGKILL (\(renewals) renewals stored), \(stored.count) stored, \(received.failed) calls failed")

        // The server comes back with the same state and serves again.
        try ca.startServerOnSamePort()
        let after = try await ca.enroll(token: token, key: try PrivateKey(generating: .p256))
        XCTAssertFalse(stored.contains(after.serial))
        let usesAfter = try query("SELECT uses_consumed FROM token WHERE id = '\(tokenID)'").first.flatMap(Int.init) ?? -1
        XCTAssertEqual(usesAfter, enrolled + 1, "consumed uses stay consumed")
    }
}
