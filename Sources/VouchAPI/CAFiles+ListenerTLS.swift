import VouchAuthority
import VouchTLS

extension CAFiles {
    /// What the CA's gRPC listener presents and trusts, read afresh on every `RotatingServerTLS.reload()`:
    /// server.pem and server_key.pem, the bundle's roots, and the intermediate that signs client
    /// certificates (clients may leave it out of their chain).
    public func listenerTLSMaterial(intermediatePEM: String) throws -> ServerTLSMaterial {
        try ServerTLSMaterial(certificateChainFile: serverCertificate, privateKeyFile: serverKey, rootsFile: bundle,
                              intermediatesPEM: intermediatePEM)
    }
}
