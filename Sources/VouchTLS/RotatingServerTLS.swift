import Foundation
import GRPCNIOTransportHTTP2
import NIOSSL
import VouchConnectionLimits
import VouchCrypto

/// Hot-reloading mTLS for any Swift gRPC server, from an agent's identity
/// files: TLS 1.3 only, client certificates required and verified against the
/// bundle. `reload()` applies the files to new handshakes without touching
/// open connections; `FileWatcher` can call it when the agent rewrites them. Connections get
/// handshake and idle timeouts and the listener a connection cap (`ListenerLimits`).
public final class RotatingServerTLS: Sendable {
    public let files: IdentityFiles
    public let reloader: SwappableCertificateReloader
    public let verifier: PeerCertificateVerifier
    public let handler: TLS13ServerHandler

    /// `limits` bound the connections of transports made by `makeTransport`; `onLimitReached`
    /// hears (rate-limited) when the connection cap refuses connections.
    public init(files: IdentityFiles, isRevoked: @escaping @Sendable (String) -> Bool = { _ in false },
                onReject: @escaping @Sendable (String) -> Void = { _ in }, limits: ListenerLimits = ListenerLimits(),
                onLimitReached: @escaping @Sendable (_ limit: Int, _ refused: Int) -> Void = { _, _ in }) throws {
        self.files = files
        let identity = try files.load()
        reloader = try SwappableCertificateReloader(certificateChainPEM: identity.fullChainPEM, privateKeyPEM: identity.keyPEM)
        verifier = try PeerCertificateVerifier(rootsPEM: identity.bundlePEM, intermediatesPEM: identity.chainPEM,
                                               isRevoked: isRevoked, onReject: onReject)
        handler = try TLS13ServerHandler(
            configuration: TLS13ServerHandler.configuration(certificateReloader: reloader, requireClientCertificate: true),
            verifier: verifier, limits: limits, onLimitReached: onLimitReached)
    }

    /// Re-reads the files and applies them to new handshakes; returns the new leaf.
    @discardableResult
    public func reload() throws -> X509Certificate {
        let identity = try files.load()
        try reloader.update(certificateChainPEM: identity.fullChainPEM, privateKeyPEM: identity.keyPEM)
        try verifier.setTrust(rootsPEM: identity.bundlePEM, intermediatesPEM: identity.chainPEM)
        return identity.leaf
    }

    /// A gRPC server transport on `host:port` using this TLS.
    public func makeTransport(host: String, port: Int, maxRequestBytes: Int = 1 << 20) throws -> HTTP2ServerTransport.Posix {
        HTTP2ServerTransport.Posix(
            address: host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port),
            // Replaced per connection by `handler`; present so the transport sets up TLS and ALPN.
            transportSecurity: try .tls(certificateReloader: reloader) { $0.requireALPN = true },
            config: .defaults { config in
                config.rpc.maxRequestPayloadSize = maxRequestBytes
                handler.configure(&config)
            })
    }
}
