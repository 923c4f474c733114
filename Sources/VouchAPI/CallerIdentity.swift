import GRPCCore
import VouchAuthority
import VouchTLS

/// The caller of the current RPC, set by `AuthenticationInterceptor`.
public enum CallerIdentity {
    @TaskLocal public static var current: Caller?

    /// The caller the interceptor established, or read from the transport.
    public static func of(_ context: ServerContext) -> Caller {
        current ?? resolve(context)
    }

    /// Reads the caller from the transport: a verified client certificate (the
    /// TLS layer already checked chain and revocation) or no credential.
    public static func resolve(_ context: ServerContext) -> Caller {
        let peer = context.remotePeer
        guard let certificate = SPIFFEIdentityInterceptor.peerCertificate(context), let spiffeID = certificate.spiffeID
        else { return Caller(credential: .none, peer: peer) }
        return Caller(credential: .certificate(spiffeID: spiffeID, serial: certificate.serialHex), peer: peer)
    }
}
