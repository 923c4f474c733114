import GRPCCore
import VouchAuthority
import VouchTLS

/// Finds the `Caller` of a gRPC call: the one `AuthenticationInterceptor` established for the
/// current RPC, or one read from the transport. `Caller` itself knows nothing of gRPC.
public enum RPCCaller {
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
