import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization
import VouchAPI
@testable import VouchAgent
import VouchCrypto
import VouchTLS
import X509

/// A CA in the middle of a root rollover, made with VouchCrypto, and an agent's files under its
/// first root: R1 with intermediate I1 (the agent's certificate), the new root R2 with I2, the
/// cross certificate X (I2's subject and key signed by R1) and the endorsement E (R2's subject and
/// key signed by R1). The agent was handed R1 with --ca-bundle. `follower` takes bundles in process.
final class RolloverWorld: Sendable {
    static let agentID = "spiffe://example.org/svc/web"

    let directory: String
    let files: IdentityFiles
    /// --ca-bundle: R1 only.
    let configuredBundle: String
    let r1: CertificateSigner, i1: CertificateSigner
    let r2: CertificateSigner, i2: CertificateSigner
    let cross: X509Certificate
    let endorsement: X509Certificate
    let agentKey: PrivateKey
    let configuration: AgentConfiguration
    let log = CollectedLog()
    let state = AgentState()
    let source = ScriptedTrustBundles()
    let follower: TrustFollower
    /// Times the follower asked the keeper to renew early.
    let renewRequests = Tally()

    var trust: AgentTrust { AgentTrust(configuration: configuration, files: files) }

    /// - Parameter endorsementLifetime: how long E is valid from now.
    init(endorsementLifetime: TimeInterval = 3600) throws {
        directory = try temporaryDirectory()
        files = IdentityFiles(directory: directory + "/out")
        try FileManager.default.createDirectory(atPath: files.directory, withIntermediateDirectories: true)
        let r1Key = try PrivateKey(generating: .p256), r2Key = try PrivateKey(generating: .p256)
        let i1Key = try PrivateKey(generating: .p256), i2Key = try PrivateKey(generating: .p256)
        r1 = try CertificateSigner(certificate: CertificateSigner.selfSigned(key: r1Key, template: Self.authority("Vouch Root CA", pathLength: 1)), key: r1Key)
        // R2 is the newer root (the agent puts chains to it first).
        r2 = try CertificateSigner(certificate: CertificateSigner.selfSigned(key: r2Key, template: Self.authority("Vouch Root CA 2", pathLength: 1,
                                                                                                                 notBefore: Date().addingTimeInterval(-30))), key: r2Key)
        i1 = try CertificateSigner(certificate: r1.sign(publicKeyOf: i1Key, template: Self.authority("Vouch Intermediate CA", pathLength: 0)), key: i1Key)
        i2 = try CertificateSigner(certificate: r2.sign(publicKeyOf: i2Key, template: Self.authority("Vouch Intermediate CA 2", pathLength: 0)), key: i2Key)
        cross = try r1.sign(publicKeyOf: i2Key, template: Self.authority("Vouch Intermediate CA 2", pathLength: 0))
        endorsement = try r1.sign(publicKeyOf: r2Key, template: Self.authority("Vouch Root CA 2", pathLength: 1, lifetime: endorsementLifetime))

        configuredBundle = directory + "/ca-bundle.pem"
        try r1.certificate.pem.write(toFile: configuredBundle, atomically: true, encoding: .utf8)
        agentKey = try PrivateKey(generating: .p256)
        try Self.write(leaf: Self.leaf(Self.agentID, key: agentKey, under: i1), key: agentKey, chain: [i1.certificate], to: files)
        try r1.certificate.pem.write(toFile: files.bundle, atomically: true, encoding: .utf8)

        configuration = AgentConfiguration(caAddress: HostPort(host: "127.0.0.1", port: 1), caBundlePath: configuredBundle,
                                           tokenFilePath: nil, outDirectory: files.directory, certificateTTL: .seconds(3600))
        let replicas = CAReplicas(CAAddressList(HostPort(host: "127.0.0.1", port: 1)), logger: log.logger)
        let requests = renewRequests
        follower = TrustFollower(files: files, trust: AgentTrust(configuration: configuration, files: files), replicas: replicas,
                                 source: source, clock: SystemAgentClock(), state: state, logger: log.logger,
                                 renewSoon: { requests.add() })
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    static func authority(_ name: String, pathLength: Int, lifetime: TimeInterval = 3600,
                          notBefore: Date = Date().addingTimeInterval(-60)) throws -> CertificateTemplate {
        CertificateTemplate(role: .authority(pathLength: pathLength), serial: try SerialNumber.random(), subject: [("CN", name)],
                            notBefore: notBefore, notAfter: Date().addingTimeInterval(lifetime))
    }

    static func leaf(_ spiffeID: String, key: PrivateKey, under issuer: CertificateSigner, lifetime: TimeInterval = 3000) throws -> X509Certificate {
        try issuer.sign(publicKeyOf: key, template: CertificateTemplate(
            role: .leaf, serial: try SerialNumber.random(), subject: [("O", "Vouch")], notBefore: Date().addingTimeInterval(-30),
            notAfter: Date().addingTimeInterval(lifetime), subjectAltNames: SubjectAltNames(uris: [spiffeID], ipAddresses: ["127.0.0.1"])))
    }

    static func write(leaf: X509Certificate, key: PrivateKey, chain: [X509Certificate], to files: IdentityFiles) throws {
        try key.pkcs8PEM().write(toFile: files.key, atomically: true, encoding: .utf8)
        try pemBundle(chain).write(toFile: files.chain, atomically: true, encoding: .utf8)
        try leaf.pem.write(toFile: files.certificate, atomically: true, encoding: .utf8)
    }

    /// The agent renewed under I2: the CA sends `[I2, X]` until the old root retires.
    func renewUnderTheNewRoot() throws {
        let key = try PrivateKey(generating: .p256)
        try Self.write(leaf: Self.leaf(Self.agentID, key: key, under: i2), key: key, chain: [i2.certificate, cross], to: files)
    }

    func bundle(_ generation: Int64, roots: [X509Certificate], intermediates: [X509Certificate] = [],
                endorsements: [X509Certificate] = []) -> TrustBundleUpdate {
        TrustBundleUpdate(generation: generation, roots: roots.map(\.der), intermediates: intermediates.map(\.der),
                          endorsements: endorsements.map(\.der), activeIntermediate: [])
    }

    /// After `root prepare`: both roots, every intermediate and X, and E.
    var prepared: TrustBundleUpdate {
        bundle(7, roots: [r1.certificate, r2.certificate], intermediates: [i1.certificate, i2.certificate, cross], endorsements: [endorsement])
    }

    /// After `root retire`: R2 and I2 only; E stays.
    var retired: TrustBundleUpdate { bundle(9, roots: [r2.certificate], intermediates: [i2.certificate], endorsements: [endorsement]) }

    func apply(_ update: TrustBundleUpdate, reload: @Sendable () throws -> Void = {}) async {
        await follower.apply(update, reloadListener: reload)
    }

    /// Every file in the agent's directory, byte for byte.
    func filesOnDisk() throws -> [String: Data] {
        var contents: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: files.directory) {
            contents[name] = FileManager.default.contents(atPath: files.directory + "/" + name)
        }
        return contents
    }

    /// The serials of the certificates in one of the agent's PEM files.
    func serials(_ path: String) throws -> [String] {
        try X509Certificate.all(inPEM: String(contentsOfFile: path, encoding: .utf8)).map(\.serialHex)
    }
}

/// Trust bundles played in process: records each confirmation the follower sends.
final class ScriptedTrustBundles: TrustBundleSource {
    let confirmations = Mutex<[(generation: Int64, sha256: [UInt8])]>([])

    func watch(_ address: HostPort, afterGeneration: Int64, onOpen: @escaping @Sendable () -> Void,
               onBundle: @escaping @Sendable (TrustBundleUpdate) -> Void) async throws {
        try await Task.sleep(for: .seconds(3600))
    }

    func confirm(_ address: HostPort, generation: Int64, bundleSHA256: [UInt8]) async throws {
        confirmations.withLock { $0.append((generation, bundleSHA256)) }
    }
}

/// A count shared with closures.
final class Tally: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func add() { count.withLock { $0 += 1 } }
}

/// CRLs by issuer serial ("" = the active issuer), as GetCRL answers them; records what was asked.
final class ScriptedIssuerCRLs: RevocationSource {
    private let state = Mutex<(crls: [String: [UInt8]], asked: [String])>(([:], []))

    func set(_ crls: [String: [UInt8]]) { state.withLock { $0 = (crls, []) } }
    var asked: [String] { state.withLock { $0.asked } }

    func crl(from address: HostPort) async throws -> [UInt8] { try await crl(from: address, issuer: "") }

    func crl(from address: HostPort, issuer: String) async throws -> [UInt8] {
        try state.withLock { state in
            state.asked.append(issuer)
            guard let crl = state.crls[issuer] else { throw RPCError(code: .notFound, message: "no CRL of issuer \(issuer)") }
            return crl
        }
    }

    func watch(_ address: HostPort, afterSequence: Int64, onOpen: @escaping @Sendable () -> Void,
               onEvent: @escaping @Sendable (Vouch_V1_RevocationEvent) -> Void) async throws {
        try await Task.sleep(for: .seconds(3600))
    }
}

/// The agent's local listener over a world's files, and peers calling its GetStatus.
final class AgentListener: Sendable {
    let world: RolloverWorld
    let tls: RotatingServerTLS
    let server: GRPCServer<HTTP2ServerTransport.Posix>
    let serving: Task<Void, any Error>
    let port: Int

    init(_ world: RolloverWorld) async throws {
        self.world = world
        tls = try RotatingServerTLS(files: world.files)
        let server = GRPCServer(transport: try tls.makeTransport(host: "127.0.0.1", port: 0), services: [AgentStatusService(state: world.state)])
        self.server = server
        serving = Task { try await server.serve() }
        port = try await server.listeningAddress?.ipv4?.port ?? 0
    }

    func stop() {
        server.beginGracefulShutdown()
        serving.cancel()
    }

    /// A peer with a fresh leaf from `issuer`; returns its GetStatus call (over a new connection each time).
    func peer(under issuer: CertificateSigner) throws -> @Sendable () async throws -> Vouch_V1_AgentStatus {
        let key = try PrivateKey(generating: .p256)
        let directory = world.directory + "/peer-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try RolloverWorld.leaf("spiffe://example.org/svc/peer", key: key, under: issuer).pem
            .write(toFile: directory + "/svid.pem", atomically: true, encoding: .utf8)
        try key.pkcs8PEM().write(toFile: directory + "/svid_key.pem", atomically: true, encoding: .utf8)
        let credentials = VouchClient.Credentials(bundlePEMPath: world.configuredBundle, certificatePEMPath: directory + "/svid.pem",
                                                  keyPEMPath: directory + "/svid_key.pem", serverIdentity: .spiffeID(RolloverWorld.agentID))
        let address = HostPort(host: "127.0.0.1", port: port)
        return {
            try await VouchClient.with(server: address, credentials: credentials) {
                try await Vouch_V1_Agent.Client(wrapping: $0).getStatus(Vouch_V1_GetStatusRequest(), options: VouchClient.options(timeout: .seconds(5)))
            }
        }
    }
}
