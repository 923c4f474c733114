import Foundation
import Synchronization
import Testing
import VouchAPI
@testable import VouchAgent
import VouchAuthority
import VouchCrypto
import VouchIdentityRules

/// The small parsers and rules every request passes through, case by case.
@Suite("Value rules")
struct ValueRulesTests {
    @Test(arguments: [
        ("spiffe://example.org/svc/web", "example.org"),
        ("spiffe://example.org/a/b.c-d_e/F9", "example.org"),
        ("spiffe://example.org/", nil),
        ("spiffe://example.org", nil),
        ("spiffe://Example.org/svc", nil),
        ("spiffe://example.org/svc//web", nil),
        ("spiffe://example.org/svc/./web", nil),
        ("spiffe://example.org/svc/../web", nil),
        ("spiffe://example.org/svc/we b", nil),
        ("spiffe://example.org/svc/ｗｅｂ", nil),
        ("spiffe://exa:mple.org/svc", nil),
        ("https://example.org/svc", nil),
        ("spiffe://example.org/" + String(repeating: "a", count: 2048), nil),
    ] as [(String, String?)])
    func spiffeIDs(id: String, trustDomain: String?) {
        #expect(IdentityRules.trustDomain(ofSPIFFEID: id) == trustDomain)
    }

    @Test(arguments: [
        ("web.internal", true), ("*.web.internal", true), ("a-b.c", true), ("localhost", true),
        ("*.internal", false), ("*", false), ("-a.b", false), ("a-.b", false), ("a..b", false), ("A.b", false),
        ("a_b.c", false), ("ａ.b", false), ("", false), (String(repeating: "a", count: 64) + ".b", false),
    ])
    func dnsNames(name: String, valid: Bool) {
        #expect(IdentityRules.isValidDNSName(name) == valid)
    }

    @Test(arguments: [
        ("01ab", [0x01, 0xab] as [UInt8]?), ("1AB", [0x01, 0xab]), ("00:01:ab", [0x01, 0xab]), ("0", []),
        ("ａａ", nil), ("٣", nil), ("0x1", nil), ("1 2", nil), ("", nil), (":", nil), (String(repeating: "f", count: 41), nil),
        ("a\u{0}b", nil),
    ])
    func serialsParseAsASCIIHexOnly(text: String, bytes: [UInt8]?) {
        #expect(SerialNumber.bytes(fromHex: text) == bytes)
    }

    @Test func serialsRoundTripAndAreCanonical() throws {
        for _ in 0..<50 {
            let serial = try SerialNumber.random()
            #expect((8...16).contains(serial.count) && serial.first != 0)
            #expect(SerialNumber.bytes(fromHex: SerialNumber.hex(serial)) == serial)
        }
        #expect(SerialNumber.canonicalHex("00:0A:bC") == "0abc", "whole octets, lowercase, no leading zero octet")
    }

    static let secret = String(repeating: "A", count: 43)

    @Test(arguments: [
        ("vch.0123456789abcdef.\(secret)", "0123456789abcdef"),
        ("  vch.0123456789ABCDEF.\(secret)\n", "0123456789abcdef"),
        ("vch.0123456789abcde.\(secret)", nil),
        ("vch.０１２３４５６７８９ａｂｃｄｅｆ.\(secret)", nil),
        ("vch.0123456789abcdeg.\(secret)", nil),
        ("vch.0123456789abcdef.short", nil),
        ("vch.0123456789abcdef.\(secret)+", nil),
        ("vch.0123456789abcdef.\(secret).x", nil),
        ("xyz.0123456789abcdef.\(secret)", nil),
        ("vch.0123456789abcdef.\(String(repeating: "A", count: 129))", nil),
    ] as [(String, String?)])
    func tokenTexts(text: String, id: String?) {
        #expect(EnrollmentToken.parse(text)?.id == id)
    }

    @Test func generatedTokensParseBackWithTheSameHash() throws {
        let token = try EnrollmentToken.generate()
        #expect(EnrollmentToken.parse(token.text)?.secretHash == token.secretHash)
    }

    @Test(arguments: [
        ("10.0.0.1", "10.0.0.1"), ("::1", "::1"), ("0:0:0:0:0:0:0:1", "::1"), ("2001:DB8::1", "2001:db8::1"),
        ("127.0.0.1\u{0}evil", nil), ("10.0.0.256", nil), ("10.0.0", nil), ("localhost", nil), ("", nil),
    ] as [(String, String?)])
    func ipAddresses(text: String, canonical: String?) {
        #expect(IPAddress.canonical(text) == canonical)
    }

    @Test(arguments: [
        ("127.0.0.1:8443", HostPort(host: "127.0.0.1", port: 8443)), ("[::1]:9443", HostPort(host: "::1", port: 9443)),
        (":8080", HostPort(host: "0.0.0.0", port: 8080)), ("ca.internal:0", HostPort(host: "ca.internal", port: 0)),
        ("127.0.0.1", nil), ("127.0.0.1:65536", nil), ("127.0.0.1:-1", nil), ("[::1]8443", nil), ("host:８４４３", nil),
    ] as [(String, HostPort?)])
    func hostPorts(text: String, parsed: HostPort?) {
        #expect(HostPort(text) == parsed)
    }

    @Test func renewalComesAtTheFractionWithinItsJitterAndNeverAtExpiry() {
        let schedule = RenewalSchedule(renewFraction: 2.0 / 3.0, jitterFraction: 0.05, minimumBackoff: 1, maximumBackoff: 30)
        let start = Date(timeIntervalSince1970: 0), end = start.addingTimeInterval(3000)
        func at(_ schedule: RenewalSchedule, _ random: Double) -> Double {
            schedule.renewalTime(notBefore: start, notAfter: end, random: random).timeIntervalSince(start)
        }
        #expect(abs(at(schedule, 0) - 2000) < 0.001)
        #expect(abs(at(schedule, 1) - 2150) < 0.001)
        #expect(abs(at(schedule, -1) - 1850) < 0.001)
        let late = RenewalSchedule(renewFraction: 0.99, jitterFraction: 0.05, minimumBackoff: 1, maximumBackoff: 30)
        #expect(abs(at(late, 1) - 2850) < 0.001, "capped at 95% of the lifetime")
    }

    @Test(arguments: [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (1000, 30.0)])
    func backoffDoublesUpToItsCap(failures: Int, seconds: Double) {
        let schedule = RenewalSchedule(renewFraction: 2.0 / 3.0, jitterFraction: 0.05, minimumBackoff: 1, maximumBackoff: 30)
        #expect(abs(schedule.backoff(failures: failures, random: 0) - seconds) < 0.001)
        #expect(abs(schedule.backoff(failures: failures, random: 1) - seconds * 1.2) < 0.001)
    }

    @Test func policiesNoOperatorCouldMeanAreRefusedBeforeServing() throws {
        func refused(_ change: (inout IssuancePolicy) -> Void) -> String? {
            var policy = IssuancePolicy(trustDomain: "example.org")
            change(&policy)
            do {
                try policy.validate()
                return nil
            } catch {
                return "\(error)"
            }
        }
        #expect(refused { _ in } == nil)
        #expect(refused { $0.profiles = [CertificateProfile(name: "web", spiffeIDPatterns: ["spiffe://example.org/web/*"])] } == nil)
        #expect(refused { $0.defaultCertificateTTL = 8 * 86400 }?.contains("not above the maximum") == true)
        #expect(refused { $0.renewalRetryWindow = -1 }?.contains("must not be negative") == true)
        #expect(refused { $0.selfRevocationLimit = -1 }?.contains("must not be negative") == true)
        #expect(refused { $0.adminIDs.insert("spiffe://other.org/ops/alice") }?.contains("outside trust domain example.org") == true)
        #expect(refused { $0.profiles = [CertificateProfile(name: "web", spiffeIDPatterns: ["spiffe://other.org/*"])] }?
            .contains("profile web: spiffe://other.org/* is outside trust domain example.org") == true)
        #expect(refused { $0.profiles = [CertificateProfile(name: "ops", spiffeIDPatterns: ["spiffe://example.org/vouch/admin"])] }?
            .contains("reserved for the CA and its admins") == true)
    }

    @Test func pemIsWhatOpenSSLWritesAndReadsBack() throws {
        let material = try TestCA.material(now: Date())
        let derFile = try temporaryDirectory() + "/root.der"
        try Data(material.root.der).write(to: URL(fileURLWithPath: derFile))
        let converted = try openssl(["x509", "-inform", "DER", "-in", derFile, "-outform", "PEM"])
        #expect(material.root.pem == converted.stdout)
        #expect(try X509Certificate(pem: material.root.pem).der == material.root.der)
        let csr = try CertificateSigningRequest.create(key: try PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames())
        #expect(try CertificateSigningRequest(pem: csr.pem).der == csr.der)
        #expect(material.root.serialHex == SerialNumber.hex(SerialNumber.bytes(fromHex: material.root.serialHex) ?? []))
    }

    @Test(arguments: [("1", RevocationReason.keyCompromise), ("keyCompromise", .keyCompromise), ("KEYCOMPROMISE", .keyCompromise),
                      ("10", .aACompromise), ("superseded", .superseded), ("7", nil), ("8", nil), ("-1", nil), ("compromise", nil)]
          as [(String, RevocationReason?)])
    func revocationReasonsByCodeOrName(text: String, reason: RevocationReason?) {
        #expect(RevocationReason(text: text) == reason)
    }

    @Test func failedAttemptsAgeOutOfTheirWindow() throws {
        let limiter = FailedAttemptLimiter(limit: 3, window: 60)
        let start = Date(timeIntervalSince1970: 1_000_000)
        let key = FailedAttemptLimiter.key(peer: "ipv4:10.0.0.1:5555", tokenID: "0123456789abcdef")
        for second in 0..<3 { _ = try limiter.begin(key: key, now: start.addingTimeInterval(Double(second))) }
        #expect(throws: AuthorityError.self) { try limiter.begin(key: key, now: start.addingTimeInterval(10)) }
        _ = try limiter.begin(key: FailedAttemptLimiter.key(peer: "ipv4:10.0.0.1:6666", tokenID: "fedcba9876543210"),
                              now: start.addingTimeInterval(10))
        _ = try limiter.begin(key: key, now: start.addingTimeInterval(61))
        #expect(FailedAttemptLimiter.key(peer: "ipv4:10.0.0.1:1", tokenID: nil) != FailedAttemptLimiter.key(peer: "ipv4:10.0.0.2:1", tokenID: nil))
        #expect(FailedAttemptLimiter.key(peer: "ipv4:10.0.0.1:1", tokenID: nil) == FailedAttemptLimiter.key(peer: "ipv4:10.0.0.1:2", tokenID: nil),
                "the port does not make a new key")
    }

    @Test func attemptsCountUntilJudgedSoParallelGuessesCannotPassTheLimitTogether() throws {
        let limiter = FailedAttemptLimiter(limit: 10, window: 60)
        let now = Date(timeIntervalSince1970: 1_000_000)
        // 40 guesses from as many threads at once: exactly the limit get through to be judged.
        let admitted = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 40) { _ in
            if (try? limiter.begin(key: "10.0.0.1|t", now: now)) != nil { admitted.withLock { $0 += 1 } }
        }
        #expect(admitted.withLock { $0 } == 10)
        // Successes are taken back: a key whose attempts all succeed is never locked.
        let other = "10.0.0.2|t"
        for _ in 0..<50 { limiter.succeeded(try limiter.begin(key: other, now: now)) }
    }
}
