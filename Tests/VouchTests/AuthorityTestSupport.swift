import Foundation
import Synchronization
import VouchAuthority
import VouchCrypto

/// A clock the test moves by hand, so rules about time run without waiting.
final class TestClock: Sendable {
    private let current: Mutex<Date>

    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { current = Mutex(start) }

    var now: Date { current.withLock { $0 } }

    func advance(_ seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

/// A CA made in memory (root, intermediate, signer) for in-process tests of the authority.
enum TestCA {
    static func material(trustDomain: String = "example.org", now: Date) throws -> CAMaterial {
        let rootKey = try PrivateKey(generating: .p256), intermediateKey = try PrivateKey(generating: .p256)
        let root = try CertificateSigner.selfSigned(key: rootKey, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", "Test Root")],
            notBefore: now.addingTimeInterval(-3600), notAfter: now.addingTimeInterval(10 * 365 * 86400)))
        let intermediate = try CertificateSigner(certificate: root, key: rootKey).sign(publicKeyOf: intermediateKey, template: CertificateTemplate(
            role: .authority(pathLength: 0), serial: try SerialNumber.random(), subject: [("CN", "Test Intermediate")],
            notBefore: now.addingTimeInterval(-3600), notAfter: now.addingTimeInterval(5 * 365 * 86400)))
        return CAMaterial(settings: CASettings(trustDomain: trustDomain, keysEncrypted: false, createdAt: now), root: root,
                          intermediate: intermediate, signer: try CertificateSigner(certificate: intermediate, key: intermediateKey))
    }
}

/// An authority over an in-memory store with a hand-moved clock, and the calls tests make of it.
struct AuthorityHarness {
    let clock = TestClock()
    let store = InMemoryAuthorityStore()
    let authority: CertificateAuthority
    static let admin = Caller(credential: .certificate(spiffeID: "spiffe://example.org/vouch/admin", serial: "01"), peer: "ipv4:10.0.0.9:1")

    init(configure: (inout IssuancePolicy) -> Void = { _ in }) throws {
        var policy = IssuancePolicy(trustDomain: "example.org")
        configure(&policy)
        let clock = self.clock
        authority = CertificateAuthority(store: store, material: try TestCA.material(now: clock.now), policy: policy,
                                         clock: { clock.now })
    }

    func token(_ spiffeID: String, dns: [String] = [], ips: [String] = [], ttl: Int64 = 900, uses: Int = 1) async throws -> String {
        try await authority.createToken(spiffeID: spiffeID, dnsNames: dns, ipAddresses: ips, ttlSeconds: ttl, uses: uses,
                                        caller: Self.admin).token.text
    }

    /// Enrolls with a new key; returns the certificate and the caller it makes on a connection.
    func enroll(_ token: String, names: SubjectAltNames = SubjectAltNames(), ttl: Int64 = 0,
                peer: String = "ipv4:10.0.0.1:5000") async throws -> (record: CertificateRecord, caller: Caller, key: PrivateKey) {
        let key = try PrivateKey(generating: .p256)
        let csr = try CertificateSigningRequest.create(key: key, subjectAltNames: names).der
        let issued = try await authority.enroll(token: token, csr: csr, ttlSeconds: ttl, caller: Caller(credential: .none, peer: peer))
        return (issued.record, Self.caller(issued.record), key)
    }

    func renew(_ caller: Caller, key: PrivateKey? = nil) async throws -> (record: CertificateRecord, caller: Caller) {
        let csr = try CertificateSigningRequest.create(key: try key ?? PrivateKey(generating: .p256), subjectAltNames: SubjectAltNames()).der
        let issued = try await authority.renew(csr: csr, ttlSeconds: 0, caller: caller)
        return (issued.record, Self.caller(issued.record))
    }

    static func caller(_ record: CertificateRecord) -> Caller {
        Caller(credential: .certificate(spiffeID: record.spiffeID, serial: record.serial), peer: "ipv4:10.0.0.1:5000")
    }
}

/// The error kind `body` throws, or nil if it succeeds.
func refusal(_ body: () async throws -> some Any) async -> AuthorityError.Kind? {
    do {
        _ = try await body()
        return nil
    } catch let error as AuthorityError {
        return error.kind
    } catch {
        return .internal
    }
}
