import Foundation
import VouchAPI
import VouchCrypto
import VouchIdentityRules
import VouchTLS

/// Whom the agent accepts as its CA: `--ca-spiffe-id` when given; otherwise the Vouch
/// server of the trust domain of the agent's own certificate, and before the first
/// enrollment (no certificate yet) the Vouch server of any trust domain the bundle vouches for.
struct CAServerIdentity: Sendable {
    let configured: String?
    let files: IdentityFiles

    var expected: ServerIdentity {
        if let configured { return .spiffeID(configured) }
        let ownID = (try? String(contentsOfFile: files.certificate, encoding: .utf8)).flatMap { try? X509Certificate(pem: $0) }?.spiffeID
        return .vouchServer(trustDomain: ownID.flatMap(IdentityRules.trustDomain(ofSPIFFEID:)))
    }

    /// Credentials for a call to the CA, with a client certificate or without.
    func credentials(bundlePath: String, clientCertificate: Bool) -> VouchClient.Credentials {
        VouchClient.Credentials(bundlePEMPath: bundlePath, certificatePEMPath: clientCertificate ? files.certificate : nil,
                                keyPEMPath: clientCertificate ? files.key : nil, serverIdentity: expected)
    }
}
