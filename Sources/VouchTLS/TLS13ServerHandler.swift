import GRPCNIOTransportHTTP2
import NIOCertificateReloading
import NIOCore
import NIOSSL
import VouchConnectionLimits

/// grpc-swift-nio-transport hard-codes a TLS 1.2 minimum and offers no
/// optional client certificates. On each accepted connection, before the
/// handshake, this replaces the transport's TLS handler with one built from
/// Vouch's own context: TLS 1.3 only, ALPN h2, client certificate optional
/// and, when sent, verified by `PeerCertificateVerifier`. The transport still
/// finds the handler by type for peer certificates. If it ever stops adding
/// one, `context(handlerType:)` throws and the connection is dropped (fails closed).
/// It also applies the listener's `ListenerLimits` (see `configure(_:)`).
public struct TLS13ServerHandler: Sendable {
    let context: NIOSSLContext
    let verifier: PeerCertificateVerifier
    public let limits: ListenerLimits
    /// Closed by `stopAccepting()` when the server begins to shut down.
    let gate = AcceptGate()
    /// Told, at most every 10 s, that the connection cap refused connections (and how many).
    let onLimitReached: @Sendable (_ limit: Int, _ refused: Int) -> Void

    public init(configuration: TLSConfiguration, verifier: PeerCertificateVerifier, limits: ListenerLimits = ListenerLimits(),
                onLimitReached: @escaping @Sendable (_ limit: Int, _ refused: Int) -> Void = { _, _ in }) throws {
        self.context = try NIOSSLContext(configuration: configuration)
        self.verifier = verifier
        self.limits = limits
        self.onLimitReached = onLimitReached
    }

    /// Installs this handler and the limits in a transport configuration: the TLS swap and the
    /// handshake/idle timeouts on each accepted connection, the connection cap on the listener,
    /// and the transport's own idle close (no RPC in flight) and keepalive pings, which make live
    /// peers answer more often than the idle timeout.
    public func configure(_ config: inout HTTP2ServerTransport.Posix.Config) {
        config.channelDebuggingCallbacks.onAcceptTCPConnection = onAccept
        config.channelDebuggingCallbacks.onBindTCPListener = onBind
        config.connection.maxIdleTime = limits.idleTimeout
        config.connection.keepalive.time = limits.idleTimeout / 2
        config.connection.keepalive.timeout = min(limits.idleTimeout / 2, .seconds(20))
    }

    /// For `ChannelDebuggingCallbacks.onBindTCPListener`: the connection cap.
    public func onBind(_ channel: any Channel) -> EventLoopFuture<Void> {
        let limits = self.limits, onLimitReached = self.onLimitReached, gate = self.gate
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(
                ConnectionCapHandler(limit: limits.maxConnections, gate: gate, onLimitReached: onLimitReached))
        }
    }

    /// Refuses connections from now on (call as graceful shutdown begins); open ones drain.
    public func stopAccepting() { gate.close() }

    /// Server TLS settings Vouch listeners use: certificate and key from a reloader on every new handshake.
    public static func configuration(certificateReloader: some CertificateReloader,
                                     requireClientCertificate: Bool) throws -> TLSConfiguration {
        var tls = try TLSConfiguration.makeServerConfiguration(certificateReloader: certificateReloader)
        tls.minimumTLSVersion = .tlsv13
        tls.certificateVerification = requireClientCertificate ? .noHostnameVerification : .optionalVerification
        tls.applicationProtocols = ["grpc-exp", "h2"]
        return tls
    }

    /// For `ChannelDebuggingCallbacks.onAcceptTCPConnection`.
    public func onAccept(_ channel: any Channel) -> EventLoopFuture<Void> {
        let context = self.context
        let verifier = self.verifier
        let limits = self.limits
        return channel.eventLoop.makeCompletedFuture {
            let pipeline = channel.pipeline.syncOperations
            let existing = try pipeline.context(handlerType: NIOSSLServerHandler.self)
            pipeline.removeHandler(context: existing, promise: nil)
            let tls = NIOSSLServerHandler(context: context, customVerificationCallbackWithMetadata: verifier.verify)
            try pipeline.addHandler(tls, position: .first)
            try pipeline.addHandler(
                TLSConnectionTimeoutHandler(handshakeTimeout: TimeAmount(limits.handshakeTimeout), idleTimeout: TimeAmount(limits.idleTimeout)),
                position: .after(tls))
        }
    }
}

