import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization
import VouchAPI
import VouchAuthority
import VouchCrypto
import VouchTLS

/// A hostile CA in the test process: it listens with the real CA's server certificate and
/// key (a stolen server key, so agents' server checks pass) and answers from `renewal`,
/// `crl` and `events`, which tests change while an agent talks to it. `honest` signs with
/// the real intermediate key (read from the CA directory), for answers a broken CA could send.
final class FakeCertificateAuthority: Vouch_V1_CertificateAuthority.SimpleServiceProtocol, Sendable {
    typealias Answer = @Sendable (CertificateSigningRequest) throws -> Vouch_V1_CertificateResponse

    let honest: CertificateSigner
    let attackerRoot: CertificateSigner
    let realCA: CAFixture
    private let state = Mutex<(renewal: Answer?, crl: (@Sendable () throws -> [UInt8])?, events: [Vouch_V1_RevocationEvent], renewals: Int)>(
        (nil, nil, [], 0))
    private let running = Mutex<(server: GRPCServer<HTTP2ServerTransport.Posix>, task: Task<Void, any Error>)?>(nil)
    private let boundPort = Mutex(0)

    /// Trust bundles queued for WatchTrustBundle, and the confirmations received.
    private let trust = Mutex<(bundles: [Vouch_V1_TrustBundle], confirmations: [Vouch_V1_TrustBundleConfirmation], watchers: Int)>(([], [], 0))

    /// Which certificate the fake's listener presents.
    enum ListenerCertificate {
        /// The real CA's server.pem and key (a stolen server key).
        case realServer
        /// A `/vouch/server` certificate the fake signs itself with the real intermediate key (a stolen intermediate).
        case signedByStolenIntermediate
        /// A `/vouch/server` certificate from this intermediate of another root (e.g. a new one),
        /// sent with it; client certificates may chain to that root too.
        case issuedBy(CertificateSigner, root: X509Certificate)
    }

    /// Creates the fake and starts listening on a free port.
    static func start(impersonating ca: CAFixture, presenting listener: ListenerCertificate = .realServer) async throws -> FakeCertificateAuthority {
        let fake = try FakeCertificateAuthority(impersonating: ca)
        try await fake.listen(presenting: listener)
        return fake
    }

    private init(impersonating ca: CAFixture) throws {
        realCA = ca
        honest = try CertificateSigner(certificate: X509Certificate(pem: String(contentsOfFile: ca.caDir + "/intermediate.pem", encoding: .utf8)),
                                       key: PrivateKey(pem: String(contentsOfFile: ca.caDir + "/intermediate_key.pem", encoding: .utf8)))
        let rootKey = try PrivateKey(generating: .p256)
        attackerRoot = try CertificateSigner(certificate: CertificateSigner.selfSigned(key: rootKey, template: CertificateTemplate(
            role: .authority(pathLength: 1), serial: try SerialNumber.random(), subject: [("CN", "Vouch Root CA")],
            notBefore: Date().addingTimeInterval(-60), notAfter: Date().addingTimeInterval(3600))), key: rootKey)
    }

    private func listen(presenting listener: ListenerCertificate) async throws {
        let ca = realCA
        let tls: RotatingServerTLS
        switch listener {
        case .realServer:
            // The real CA's listener TLS, over its files.
            tls = try RotatingServerTLS(requireClientCertificate: false) {
                try CAFiles(directory: ca.caDir).listenerTLSMaterial(
                    intermediatePEM: String(contentsOfFile: ca.caDir + "/intermediate.pem", encoding: .utf8))
            }
        case .signedByStolenIntermediate, .issuedBy:
            let (issuer, roots) = if case .issuedBy(let signer, let root) = listener { (signer, [realRoot, root]) } else { (honest, [realRoot]) }
            let key = try PrivateKey(generating: .p256)
            let certificate = try issuer.sign(publicKeyOf: key, template: leafTemplate(spiffeID: "spiffe://example.org/vouch/server", lifetime: 3600))
            let material = ServerTLSMaterial(certificateChainPEM: certificate.pem + issuer.certificate.pem, privateKeyPEM: try key.pkcs8PEM(),
                                             rootsPEM: pemBundle(roots), intermediatesPEM: issuer.certificate.pem)
            tls = try RotatingServerTLS(requireClientCertificate: false) { material }
        }
        let transport = try tls.makeTransport(host: "127.0.0.1", port: 0)
        let server = GRPCServer(transport: transport, services: [self])
        let task = Task { try await server.serve() }
        running.withLock { $0 = (server, task) }
        let port = (try await server.listeningAddress)?.ipv4?.port ?? 0
        boundPort.withLock { $0 = port }
    }

    func stop() {
        running.withLock {
            $0?.server.beginGracefulShutdown()
            $0?.task.cancel()
            $0 = nil
        }
    }

    var port: Int { boundPort.withLock { $0 } }
    var address: String { "127.0.0.1:\(port)" }
    var renewals: Int { state.withLock { $0.renewals } }

    /// The answer to Enroll and Renew.
    func answerIssuance(_ answer: @escaping Answer) { state.withLock { $0.renewal = answer } }
    func answerCRL(_ crl: @escaping @Sendable () throws -> [UInt8]) { state.withLock { $0.crl = crl } }
    /// Queues events for the revocation stream; each is sent once, on whichever stream is open.
    func stream(_ events: [Vouch_V1_RevocationEvent]) { state.withLock { $0.events += events } }

    // MARK: Material

    func leafTemplate(spiffeID: String, lifetime: TimeInterval, notBefore: Date = Date().addingTimeInterval(-30),
                      role: CertificateTemplate.Role = .leaf, extraURIs: [String] = []) throws -> CertificateTemplate {
        CertificateTemplate(role: role, serial: try SerialNumber.random(), subject: [("O", "Vouch")],
                            notBefore: notBefore, notAfter: notBefore.addingTimeInterval(lifetime),
                            subjectAltNames: SubjectAltNames(uris: [spiffeID] + extraURIs, dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"]))
    }

    func response(_ leaf: X509Certificate, chain: [X509Certificate]? = nil, roots: [X509Certificate]? = nil) -> Vouch_V1_CertificateResponse {
        var response = Vouch_V1_CertificateResponse()
        response.certificate = Data(leaf.der)
        response.chain = (chain ?? [honest.certificate]).map { Data($0.der) }
        response.roots = (roots ?? [realRoot]).map { Data($0.der) }
        response.serial = leaf.serialHex
        response.spiffeID = leaf.spiffeID ?? ""
        response.notAfter = Int64(leaf.notAfter.timeIntervalSince1970)
        return response
    }

    var realRoot: X509Certificate { try! X509Certificate(pem: String(contentsOfFile: realCA.caDir + "/root.pem", encoding: .utf8)) }

    /// A CRL signed with the real intermediate key.
    func genuineCRL(number: Int64, revoking serials: [String] = [], nextUpdate: Date = Date().addingTimeInterval(3600)) throws -> [UInt8] {
        try honest.makeCRL(entries: serials.map { RevokedCertificateEntry(serial: SerialNumber.bytes(fromHex: $0)!, revokedAt: Date(), reason: 1) },
                           number: number, thisUpdate: Date().addingTimeInterval(-7200), nextUpdate: nextUpdate)
    }

    static func event(serial: String, spiffeID: String = "spiffe://example.org/svc/web", sequence: Int64) -> Vouch_V1_RevocationEvent {
        var event = Vouch_V1_RevocationEvent()
        event.serial = serial
        event.spiffeID = spiffeID
        event.sequence = sequence
        event.reason = 1
        return event
    }

    // MARK: Service

    /// Answered like Renew (the token is not looked at).
    func enroll(request: Vouch_V1_EnrollRequest, context: ServerContext) async throws -> Vouch_V1_CertificateResponse {
        let answer = state.withLock { $0.renewal }
        guard let answer else { throw RPCError(code: .unavailable, message: "fake CA: no answer set") }
        return try answer(try CertificateSigningRequest(der: Array(request.csr)))
    }

    func renew(request: Vouch_V1_RenewRequest, context: ServerContext) async throws -> Vouch_V1_CertificateResponse {
        let answer = state.withLock { $0.renewals += 1; return $0.renewal }
        guard let answer else { throw RPCError(code: .unavailable, message: "fake CA: no answer set") }
        return try answer(try CertificateSigningRequest(der: Array(request.csr)))
    }

    func revoke(request: Vouch_V1_RevokeRequest, context: ServerContext) async throws -> Vouch_V1_RevokeResponse {
        throw RPCError(code: .unimplemented, message: "fake CA")
    }

    func getTrustBundle(request: Vouch_V1_TrustBundleRequest, context: ServerContext) async throws -> Vouch_V1_TrustBundle {
        throw RPCError(code: .unimplemented, message: "fake CA")
    }

    /// Queues bundles for the trust bundle stream; each is sent once, on whichever stream is open.
    func sendTrustBundles(_ bundles: [Vouch_V1_TrustBundle]) { trust.withLock { $0.bundles += bundles } }
    var trustBundleWatchers: Int { trust.withLock { $0.watchers } }
    var trustConfirmations: [Vouch_V1_TrustBundleConfirmation] { trust.withLock { $0.confirmations } }
    /// The fleet reports received (ReportAgent), oldest first.
    var agentReports: [Vouch_V1_AgentReport] { reports.withLock { $0 } }
    private let reports = Mutex<[Vouch_V1_AgentReport]>([])

    /// Sends queued bundles as they come, and holds the stream open.
    func watchTrustBundle(request: Vouch_V1_WatchTrustBundleRequest, response: RPCWriter<Vouch_V1_TrustBundle>,
                          context: ServerContext) async throws {
        trust.withLock { $0.watchers += 1 }
        while !Task.isCancelled {
            let bundles = trust.withLock { state in
                defer { state.bundles = [] }
                return state.bundles
            }
            for bundle in bundles { try await response.write(bundle) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    func confirmTrustBundle(request: Vouch_V1_TrustBundleConfirmation,
                            context: ServerContext) async throws -> Vouch_V1_TrustBundleConfirmationResponse {
        trust.withLock { $0.confirmations.append(request) }
        return Vouch_V1_TrustBundleConfirmationResponse()
    }

    func reportAgent(request: Vouch_V1_AgentReport, context: ServerContext) async throws -> Vouch_V1_AgentReportResponse {
        reports.withLock { $0.append(request) }
        return Vouch_V1_AgentReportResponse()
    }

    /// The set CRL, or else the real CA's current one.
    func getCRL(request: Vouch_V1_CRLRequest, context: ServerContext) async throws -> Vouch_V1_CRLResponse {
        if let crl = state.withLock({ $0.crl }) {
            var response = Vouch_V1_CRLResponse()
            response.crl = Data(try crl())
            return response
        }
        return try await realCA.ca(realCA.anonymous) { try await $0.getCRL(Vouch_V1_CRLRequest(), options: VouchClient.options()) }
    }

    /// Sends queued events as they come, and holds the stream open.
    func watchRevocations(request: Vouch_V1_WatchRevocationsRequest, response: RPCWriter<Vouch_V1_RevocationEvent>,
                          context: ServerContext) async throws {
        while !Task.isCancelled {
            let events = state.withLock { state in
                defer { state.events = [] }
                return state.events
            }
            for event in events { try await response.write(event) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}
