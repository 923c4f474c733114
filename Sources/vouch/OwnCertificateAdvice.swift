import Foundation
import VouchAuthority
import VouchCrypto

/// What replaces each kind of the CA's own certificates still under the old root, for `root
/// status` and `root retire`: server.pem is reissued by `ca server-cert`, a listener certificate
/// renews itself on a running server (a stopped server's just expires), an admin certificate is
/// renewed by `ca admin-cert`.
func ownCertificateAdvice(_ sample: [RolloverCertificate], context: IssuerCommandContext) -> String {
    let dir = context.files.directory.path
    let serverID = IssuancePolicy.serverID(trustDomain: context.settings.trustDomain)
    let serverPEM = (try? X509Certificate(pem: OperatorFile.text(context.files.serverCertificate, what: "certificate file", limit: 1 << 20)))?.serialHex
    var advice: [String] = []
    if let serverPEM, sample.contains(where: { $0.serial == serverPEM }) {
        advice.append("server.pem (\(serverPEM)): reissue it with vouch ca server-cert --dir \(dir)")
    }
    let listeners = sample.filter { $0.spiffeID == serverID && $0.serial != serverPEM }
    if let last = listeners.map(\.notAfter).max() {
        advice.append("\(counted(listeners.count, "listener certificate")) of \(serverID): a running server renews its own when the "
            + "signing intermediate changes; a stopped server's expires by \(iso8601(last))")
    }
    for id in Set(sample.map(\.spiffeID)).subtracting([serverID]).sorted() {
        advice.append("\(id): renew it with vouch ca admin-cert --dir \(dir) --spiffe-id \(id) --out <the directory of its admin.pem>")
    }
    return advice.joined(separator: "; ")
}
