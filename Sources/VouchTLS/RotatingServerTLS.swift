import Foundation
import GRPCNIOTransportHTTP2
import NIOSSL
import VouchConnectionLimits
import X509

/// Hot-reloading TLS for any Swift gRPC server: the one listener TLS of Vouch, used by the CA
/// server and the agent alike. TLS 1.3 only; client certificates, when sent (or when required),
/// verified against the material's roots. `reload()` reads the material again and applies it to
/// new handshakes without touching open connections; `FileWatcher` can call it when an agent
/// rewrites its files. Connections get handshake and idle timeouts and the listener a connection
/// cap (`ListenerLimits`).
public final class RotatingServerTLS: Sendable {
    private let load: @Sendable () throws -> ServerTLSMaterial
    public let reloader: SwappableCertificateReloader
    public let verifier: PeerCertificateVerifier
    public let handler: TLS13ServerHandler

    /// mTLS from an agent's identity files: client certificates required.
    public convenience init(files: IdentityFiles, isRevoked: @escaping @Sendable (String) -> Bool = { _ in false },
                            isRevokedByIssuer: @escaping PeerCertificateVerifier.RevokedByIssuer = { _, _ in false },
                            onReject: @escaping @Sendable (String) -> Void = { _ in }, limits: ListenerLimits = ListenerLimits(),
                            onLimitReached: @escaping @Sendable (_ limit: Int, _ refused: Int) -> Void = { _, _ in }) throws {
        try self.init(requireClientCertificate: true, isRevoked: isRevoked, isRevokedByIssuer: isRevokedByIssuer, onReject: onReject, limits: limits,
                      onLimitReached: onLimitReached, load: { try files.load().serverTLSMaterial })
    }

    /// - Parameters:
    ///   - isRevoked: answers for a lowercase hex serial on every handshake with a client certificate.
    ///   - isRevokedByIssuer: asked for each certificate of a validated client chain but its root (an intermediate its root revoked).
    ///   - onReject: told why a client certificate was refused.
    ///   - limits: bound the connections of transports made by `makeTransport`.
    ///   - onLimitReached: hears (rate-limited) when the connection cap refuses connections.
    ///   - expiredGrace: client certificates expired no longer ago are accepted (`PeerCertificateVerifier.expiredGrace`).
    ///   - load: reads the material, now and on every `reload()`.
    public init(requireClientCertificate: Bool, isRevoked: @escaping @Sendable (String) -> Bool = { _ in false },
                isRevokedByIssuer: @escaping PeerCertificateVerifier.RevokedByIssuer = { _, _ in false },
                onReject: @escaping @Sendable (String) -> Void = { _ in }, limits: ListenerLimits = ListenerLimits(),
                onLimitReached: @escaping @Sendable (_ limit: Int, _ refused: Int) -> Void = { _, _ in },
                expiredGrace: TimeInterval = 0,
                load: @escaping @Sendable () throws -> ServerTLSMaterial) throws {
        self.load = load
        let material = try load()
        reloader = try SwappableCertificateReloader(certificateChainPEM: material.certificateChainPEM, privateKeyPEM: material.privateKeyPEM)
        verifier = try PeerCertificateVerifier(rootsPEM: material.rootsPEM, intermediatesPEM: material.intermediatesPEM,
                                               isRevoked: isRevoked, isRevokedByIssuer: isRevokedByIssuer, onReject: onReject,
                                               expiredGrace: expiredGrace)
        handler = try TLS13ServerHandler(
            configuration: TLS13ServerHandler.configuration(certificateReloader: reloader, requireClientCertificate: requireClientCertificate),
            verifier: verifier, limits: limits, onLimitReached: onLimitReached)
    }

    /// Reads the material again and applies it to new handshakes; returns the new leaf.
    @discardableResult
    public func reload() throws -> Certificate {
        let material = try load()
        try reloader.update(certificateChainPEM: material.certificateChainPEM, privateKeyPEM: material.privateKeyPEM)
        try verifier.setTrust(rootsPEM: material.rootsPEM, intermediatesPEM: material.intermediatesPEM)
        return try Certificate(firstInPEM: material.certificateChainPEM)
    }

    /// A gRPC server transport on `host:port` using this TLS.
    public func makeTransport(host: String, port: Int, maxRequestBytes: Int = 1 << 20,
                              maxConcurrentStreams: Int? = nil) throws -> HTTP2ServerTransport.Posix {
        HTTP2ServerTransport.Posix(
            address: host.contains(":") ? .ipv6(host: host, port: port) : .ipv4(host: host, port: port),
            // Replaced per connection by `handler`; present so the transport sets up TLS and ALPN.
            transportSecurity: try .tls(certificateReloader: reloader) { $0.requireALPN = true },
            config: .defaults { config in
                config.rpc.maxRequestPayloadSize = maxRequestBytes
                if let maxConcurrentStreams { config.http2.maxConcurrentStreams = maxConcurrentStreams }
                handler.configure(&config)
            })
    }
}
