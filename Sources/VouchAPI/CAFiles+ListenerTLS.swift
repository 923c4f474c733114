import VouchAuthority
import VouchCrypto
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

extension CertificateAuthority {
    /// What the CA's gRPC listener presents (its own certificate, `ServerListenerIdentity`) and
    /// trusts, read afresh on every `RotatingServerTLS.reload()`.
    public func listenerTLSMaterial(identity: ServerListenerIdentity) -> ServerTLSMaterial {
        let presented = identity.presented
        let pools = listenerPools
        return ServerTLSMaterial(certificateChainPEM: presented.certificateChainPEM, privateKeyPEM: presented.privateKeyPEM,
                                 rootsPEM: pools.rootsPEM, intermediatesPEM: pools.intermediatesPEM)
    }

    /// The same with server.pem and server_key.pem as the certificate (no `ServerListenerIdentity`).
    public func listenerTLSMaterial(files: CAFiles) throws -> ServerTLSMaterial {
        let pools = listenerPools
        var material = try files.listenerTLSMaterial(intermediatePEM: pools.intermediatesPEM)
        material.rootsPEM = pools.rootsPEM
        return material
    }

    /// Whom client certificates may chain to: every root not retired; and the intermediates a
    /// client may leave out of its chain: every intermediate not retired and the cross
    /// certificates in use. So a leaf of any issuer still trusted passes the handshake, whichever
    /// issuer signs now (a client sends only its leaf).
    public var listenerPools: (rootsPEM: String, intermediatesPEM: String) {
        let set = issuerSet
        return (set.rootsDER.map { PEM.encode($0, label: "CERTIFICATE") }.joined(),
                set.poolIntermediatesDER.map { PEM.encode($0, label: "CERTIFICATE") }.joined())
    }
}
