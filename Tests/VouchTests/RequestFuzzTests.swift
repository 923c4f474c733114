import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI
import VouchCrypto
import XCTest

/// Bounded fuzzing of every request message, field by field, against a real server:
/// serials, SPIFFE IDs, DNS names, IPs, TTLs, tokens, reason codes, page tokens. Every
/// answer must be a clear refusal or a success, never a crash, an internal error or an
/// error text that echoes unbounded input.
/// `VOUCH_FUZZ_ITERATIONS=20000 scripts/test.sh --filter RequestFuzzTests` runs the long variant.
final class RequestFuzzTests: XCTestCase {
    static let iterations = Int(ProcessInfo.processInfo.environment["VOUCH_FUZZ_ITERATIONS"] ?? "") ?? 300

    /// Codes that mean the server failed rather than refused.
    static let failures: Set<RPCError.Code> = [.internalError, .unknown, .unavailable, .dataLoss, .unimplemented]

    func testFullwidthSerialIsInvalidArgumentAndTheServerLives() async throws {
        let ca = try CAFixture()
        let key = try PrivateKey(generating: .p256)
        let web = try ca.writeIdentity(try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/web"), key: key),
                                       key: key, name: "web")
        for serial in ["ａａ", "０１", "٣٣", "𝟘𝟙", "a\u{0}b"] {
            await assertRPCError(.invalidArgument, "Revoke \(serial.debugDescription) with a workload certificate") {
                try await ca.revoke(serial, as: web)
            }
            await assertRPCError(.invalidArgument, "Admin GetCertificate \(serial.debugDescription)") {
                var request = Vouch_V1_GetCertificateRequest()
                request.serial = serial
                return try await VouchClient.with(server: ca.address, credentials: ca.admin) {
                    try await Vouch_V1_Admin.Client(wrapping: $0).getCertificate(request)
                }
            }
        }
        XCTAssertTrue(ca.server.process.isRunning, "the server survives")
        _ = try await ca.ca(ca.anonymous) { try await $0.getTrustBundle(Vouch_V1_TrustBundleRequest()) }
    }

    func testEveryRequestMessageSurvivesHostileFields() async throws {
        continueAfterFailure = false  // after a crash every later call fails too; the first one says why
        let ca = try CAFixture()
        let token = try ca.createToken(spiffeID: "spiffe://example.org/svc/fuzz", dns: ["fuzz.internal"], ips: ["10.0.0.1"], uses: 1000)
        let key = try PrivateKey(generating: .p256)
        let issued = try await ca.enroll(token: token, key: key)
        let workload = try ca.writeIdentity(issued, key: key, name: "fuzz")
        let csr = try CertificateSigningRequest.create(key: try PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames()).der
        var random = ParserFuzzTests.SeededGenerator(state: 0xF0_22ED_5EED)
        var outcomes: [String: Int] = [:]

        try await VouchClient.with(server: ca.address, credentials: ca.admin) { adminConnection in
            try await VouchClient.with(server: ca.address, credentials: workload) { workloadConnection in
                let admin = Vouch_V1_Admin.Client(wrapping: adminConnection)
                let asAdmin = Vouch_V1_CertificateAuthority.Client(wrapping: adminConnection)
                let asWorkload = Vouch_V1_CertificateAuthority.Client(wrapping: workloadConnection)
                let options = VouchClient.options(timeout: .seconds(10))
                var text = HostileText(random: random)
                // WatchRevocations calls are held open until their 50 ms deadline: they run beside the
                // other calls, and their answers are checked like the others' once the loop is done.
                var watches: [Task<(iteration: Int, refusal: RPCError?), any Error>] = []
                for iteration in 0..<Self.iterations {
                    let rpc = iteration % 11
                    let name: String
                    do {
                        switch rpc {
                        case 0:
                            name = "Enroll"
                            var request = Vouch_V1_EnrollRequest()
                            request.token = text.mutated(token)
                            request.csr = Data(text.bytes(from: csr))
                            request.ttlSeconds = text.int64()
                            _ = try await asAdmin.enroll(request, options: options)
                        case 1:
                            name = "Renew"
                            var request = Vouch_V1_RenewRequest()
                            request.csr = Data(text.bytes(from: csr))
                            request.ttlSeconds = text.int64()
                            _ = try await asWorkload.renew(request, options: options)
                        case 2, 3:
                            name = rpc == 2 ? "Revoke(workload)" : "Revoke(admin)"
                            var request = Vouch_V1_RevokeRequest()
                            // Around a serial that is not the workload's own, so it keeps its certificate for Renew.
                            request.serial = text.mutated(rpc == 2 ? "0123456789abcdef0123" : issued.serial)
                            request.reason = Int32(truncatingIfNeeded: text.int64())
                            _ = try await (rpc == 2 ? asWorkload : asAdmin).revoke(request, options: options)
                        case 4:
                            name = "CreateToken"
                            var request = Vouch_V1_CreateTokenRequest()
                            request.spiffeID = text.mutated("spiffe://example.org/svc/x")
                            request.dnsNames = (0..<text.count()).map { _ in text.mutated("a.example.org", huge: false) }
                            request.ipAddresses = (0..<text.count()).map { _ in text.mutated("10.1.2.3", huge: false) }
                            request.ttlSeconds = text.int64()
                            request.uses = Int32(truncatingIfNeeded: text.int64())
                            _ = try await admin.createToken(request, options: options)
                        case 5:
                            name = "RevokeToken"
                            var request = Vouch_V1_RevokeTokenRequest()
                            request.tokenID = text.mutated("0123456789abcdef")
                            _ = try await admin.revokeToken(request, options: options)
                        case 6:
                            name = "ListCertificates"
                            var request = Vouch_V1_ListCertificatesRequest()
                            request.identity = text.mutated("spiffe://example.org/svc/*")
                            request.status = Vouch_V1_CertificateStatus(rawValue: Int(Int32(truncatingIfNeeded: text.int64()))) ?? .active
                            request.expiringWithinSeconds = text.int64()
                            request.pageSize = Int32(truncatingIfNeeded: text.int64())
                            request.pageToken = text.mutated("12")
                            _ = try await admin.listCertificates(request, options: options)
                        case 7:
                            name = "GetCertificate"
                            var request = Vouch_V1_GetCertificateRequest()
                            request.serial = text.mutated(issued.serial)
                            _ = try await admin.getCertificate(request, options: options)
                        case 8:
                            name = "ListAuditEvents"
                            var request = Vouch_V1_ListAuditEventsRequest()
                            request.afterID = text.int64()
                            request.limit = Int32(truncatingIfNeeded: text.int64())
                            _ = try await admin.listAuditEvents(request, options: options)
                        case 9:
                            name = "WatchRevocations"
                            var request = Vouch_V1_WatchRevocationsRequest()
                            request.afterSequence = text.int64()
                            watches.append(Task { [request] in
                                do {
                                    try await asWorkload.watchRevocations(request, options: VouchClient.options(timeout: .milliseconds(50))) {
                                        for try await _ in $0.messages {}
                                    }
                                } catch let error as RPCError {
                                    return (iteration, error.code == .deadlineExceeded ? nil : error)
                                }
                                return (iteration, nil)
                            })
                            continue
                        default:
                            name = "GetCRL"
                            _ = try await asAdmin.getCRL(Vouch_V1_CRLRequest(), options: options)
                        }
                        outcomes["\(name) ok", default: 0] += 1
                    } catch let error as RPCError {
                        let what = "iteration \(iteration) rpc \(rpc)"
                        XCTAssertFalse(Self.failures.contains(error.code), "\(what): \(error.code) \(error.message.prefix(300))")
                        XCTAssertLessThanOrEqual(error.message.utf8.count, 1200, "\(what): the error echoes unbounded input")
                        outcomes["\(rpc) \(error.code)", default: 0] += 1
                    }
                }
                for watch in watches {
                    let (iteration, refusal) = try await watch.value
                    guard let error = refusal else {
                        outcomes["WatchRevocations ok", default: 0] += 1
                        continue
                    }
                    let what = "iteration \(iteration) rpc 9"
                    XCTAssertFalse(Self.failures.contains(error.code), "\(what): \(error.code) \(error.message.prefix(300))")
                    XCTAssertLessThanOrEqual(error.message.utf8.count, 1200, "\(what): the error echoes unbounded input")
                    outcomes["9 \(error.code)", default: 0] += 1
                }
                random = text.random
            }
        }
        print("request fuzz: \(Self.iterations) calls: \(outcomes.sorted { $0.key < $1.key })")
        XCTAssertTrue(ca.server.process.isRunning, "the server survives every message")
    }
}

/// Hostile strings and numbers: Unicode look-alikes of hex and ASCII, NULs, control and
/// bidi characters, glob and path syntax, and now and then 100 KB of it.
struct HostileText {
    var random: ParserFuzzTests.SeededGenerator

    static let pieces = ["ａ", "Ｆ", "０", "٣", "𝟘", "\u{0}", "\u{202E}", "e\u{301}", "\u{FEFF}", "🙂", "../", "%00", "*", "?", "[",
                         "]", "\\", "\"", "'", "\n", ":", ".", "/", "//", "spiffe://", "example.org", "vouch/admin", "vouch/server",
                         "0123456789abcdef", "ff", "0x", "-", "_", "@", " ", "vch.", "localhost", "127.0.0.1", "::1",
                         "999.1.1.1", "xn--", "A", "9", "=", ","]

    init(random: ParserFuzzTests.SeededGenerator) { self.random = random }

    mutating func piece() -> String { Self.pieces.randomElement(using: &random)! }

    /// A valid value with a few pieces inserted, replaced or cut; or pure noise; rarely huge
    /// (up to 100,000 characters, so a request stays under the transport's 1 MiB cap).
    mutating func mutated(_ valid: String, huge: Bool = true) -> String {
        switch Int.random(in: 0..<20, using: &random) {
        case 0 where huge: return String(repeating: piece(), count: Int.random(in: 1_000...100_000, using: &random) / 4)
        case 1: return ""
        case 2: return valid
        case 3...6: return (0..<Int.random(in: 1...8, using: &random)).map { _ in piece() }.joined()
        default:
            var characters = Array(valid)
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let index = Int.random(in: 0...characters.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: characters.insert(contentsOf: piece(), at: index)
                case 1 where index < characters.count: characters.replaceSubrange(index...index, with: piece())
                default: characters = Array(characters.prefix(index))
                }
            }
            return String(characters)
        }
    }

    mutating func int64() -> Int64 {
        [0, -1, 1, 5, 60, 3600, 86_400, Int64(Int32.max), Int64(Int32.min), .max, .min,
         Int64.random(in: .min ... .max, using: &random)].randomElement(using: &random)!
    }

    mutating func count() -> Int { [0, 1, 2, 150].randomElement(using: &random)! }

    /// A CSR mutated as ParserFuzzTests does, or left intact (a valid request).
    mutating func bytes(from der: [UInt8]) -> [UInt8] {
        guard Int.random(in: 0..<4, using: &random) != 0 else { return der }
        var bytes = der
        let index = Int.random(in: 0..<bytes.count, using: &random)
        bytes[index] ^= UInt8.random(in: 1...255, using: &random)
        return bytes
    }
}
