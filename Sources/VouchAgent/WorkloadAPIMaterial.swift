import Foundation
import SwiftASN1
import VouchIdentityRules
import VouchTLS
import VouchWorkloadAPI

/// The agent's identity as the Workload API hands it out: DER, not PEM, as the SPIFFE standard says.
struct WorkloadAPIMaterial: Sendable, Equatable {
    let spiffeID: String
    /// `spiffe://<trust domain>`, the key of the bundle maps.
    let trustDomainID: String
    let serial: String
    let notAfter: Date
    /// Leaf then intermediates, DER, concatenated.
    let chainDER: Data
    /// Unencrypted PKCS#8 DER.
    let keyDER: Data
    /// The roots, DER, concatenated (several during a root rollover).
    let bundleDER: Data

    init(_ identity: LoadedIdentity) throws {
        guard let spiffeID = identity.leaf.spiffeID, let domain = IdentityRules.trustDomain(ofSPIFFEID: spiffeID) else {
            throw WorkloadAPIConfigurationError("the agent's certificate has no SPIFFE ID")
        }
        self.spiffeID = spiffeID
        trustDomainID = "spiffe://" + domain
        serial = identity.leaf.serialHex
        notAfter = identity.leaf.notValidAfter
        chainDER = try Self.der(identity.certificatePEM + "\n" + identity.chainPEM)
        bundleDER = try Self.der(identity.bundlePEM)
        keyDER = Data(try PEMDocument(pemString: identity.keyPEM).derBytes)
    }

    /// Every PEM block's DER, concatenated in order.
    static func der(_ pem: String) throws -> Data {
        guard pem.contains("-----BEGIN") else { return Data() }
        return Data(try PEMDocument.parseMultiple(pemString: pem).flatMap(\.derBytes))
    }

    var svidResponse: X509SVIDResponse {
        var svid = X509SVID()
        svid.spiffeID = spiffeID
        svid.x509Svid = chainDER
        svid.x509SvidKey = keyDER
        svid.bundle = bundleDER
        var response = X509SVIDResponse()
        response.svids = [svid]
        return response
    }

    var bundlesResponse: X509BundlesResponse {
        var response = X509BundlesResponse()
        response.bundles = [trustDomainID: bundleDER]
        return response
    }
}
