import GRPCNIOTransportHTTP2
import NIOCertificateReloading
import NIOCore
import NIOSSL

/// grpc-swift-nio-transport hard-codes a TLS 1.2 minimum and offers no
/// optional client certificates. On each accepted connection, before the
/// handshake, this replaces the transport's TLS handler with one built from
/// Vouch's own context: TLS 1.3 only, ALPN h2, client certificate optional
/// and, when sent, verified by `PeerCertificateVerifier`. The transport still
/// finds the handler by type for peer certificates. If it ever stops adding
/// one, `context(handlerType:)` throws and the connection is dropped (fails closed).
public struct TLS13ServerHandler: Sendable {
    let context: NIOSSLContext
    let verifier: PeerCertificateVerifier

    public init(configuration: TLSConfiguration, verifier: PeerCertificateVerifier) throws {
        self.context = try NIOSSLContext(configuration: configuration)
        self.verifier = verifier
    }

    /// Server TLS settings Vouch listeners use, for a certificate and key in PEM files.
    public static func configuration(certificatePEMPath: String, keyPEMPath: String) throws -> TLSConfiguration {
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificatePEMPath).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: keyPEMPath, format: .pem)))
        return restrict(tls, requireClientCertificate: false)
    }

    /// Server TLS settings whose certificate and key come from a reloader on every new handshake.
    public static func configuration(certificateReloader: some CertificateReloader,
                                     requireClientCertificate: Bool) throws -> TLSConfiguration {
        restrict(try TLSConfiguration.makeServerConfiguration(certificateReloader: certificateReloader),
                 requireClientCertificate: requireClientCertificate)
    }

    private static func restrict(_ configuration: TLSConfiguration, requireClientCertificate: Bool) -> TLSConfiguration {
        var tls = configuration
        tls.minimumTLSVersion = .tlsv13
        tls.certificateVerification = requireClientCertificate ? .noHostnameVerification : .optionalVerification
        tls.applicationProtocols = ["grpc-exp", "h2"]
        return tls
    }

    /// For `ChannelDebuggingCallbacks.onAcceptTCPConnection`.
    public func onAccept(_ channel: any Channel) -> EventLoopFuture<Void> {
        let context = self.context
        let verifier = self.verifier
        return channel.eventLoop.makeCompletedFuture {
            let pipeline = channel.pipeline.syncOperations
            let existing = try pipeline.context(handlerType: NIOSSLServerHandler.self)
            pipeline.removeHandler(context: existing, promise: nil)
            try pipeline.addHandler(
                NIOSSLServerHandler(context: context, customVerificationCallbackWithMetadata: verifier.verify),
                position: .first)
        }
    }
}

