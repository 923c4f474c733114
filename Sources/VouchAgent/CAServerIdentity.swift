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

    /// Credentials for a call to the CA, with a client certificate or without. The CA must chain to
    /// the agent's own bundle.pem once it holds an identity (bundle.pem follows the CA's root
    /// rollovers; --ca-bundle may still name only a retired root), to `bundlePath` (--ca-bundle) before.
    func credentials(bundlePath: String, clientCertificate: Bool) -> VouchClient.Credentials {
        var credentials = VouchClient.Credentials(bundlePEMPath: trustBundle(configured: bundlePath), certificatePEMPath: clientCertificate ? files.certificate : nil,
                                                  keyPEMPath: clientCertificate ? files.key : nil, serverIdentity: expected)
        // A server certificate under an intermediate its root revoked is refused (the root CRLs held).
        credentials.isRevokedByIssuer = { [files] in RootCRLRevocations(files: files).isRevoked($0, by: $1) }
        return credentials
    }

    /// Credentials for Enroll: always --ca-bundle. A token is spent only on a CA the operator named,
    /// never on one trusted through files an earlier run left (they may be the reason for enrolling).
    func enrollmentCredentials(bundlePath: String) -> VouchClient.Credentials {
        VouchClient.Credentials(bundlePEMPath: bundlePath, serverIdentity: expected)
    }

    /// bundle.pem when the agent holds an identity (certificate and bundle on disk), else `configured`.
    func trustBundle(configured: String) -> String {
        let manager = FileManager.default
        return manager.fileExists(atPath: files.certificate) && manager.fileExists(atPath: files.bundle) ? files.bundle : configured
    }
}
