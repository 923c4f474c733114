import Foundation
import VouchAuthority
import VouchCrypto
import VouchHTTP

/// The CA's plain-HTTP routes for software that does not speak gRPC:
/// `GET /crl` (DER CRL of the signing intermediate, e.g. for nginx `ssl_crl` or envoy),
/// `GET /crl/<intermediate or root serial>` (that issuer's; 404 unknown or a root with no CRL yet,
/// 410 retired), `GET /crl/all.pem` (every intermediate's CRL in PEM, then every root's that is
/// not retired: one file for nginx, HAProxy, PostgreSQL or envoy, which check the whole chain) and an RFC 6960
/// OCSP responder at `POST /ocsp` and `GET /ocsp/<base64 request>`, `GET /healthz`
/// for load balancers and probes, `GET /metrics` (Prometheus) and `GET /audit/checkpoint`
/// (the latest signed audit checkpoint, one JSON line) when given.
public enum CAHTTPRoutes {
    public static func handler(authority: CertificateAuthority, store: any AuthorityStore,
                               metrics: (@Sendable () async -> HTTPResponse)? = nil,
                               auditCheckpoints: AuditCheckpointer? = nil, token: PKCS11Token? = nil)
        -> @Sendable (HTTPRequest) async -> HTTPResponse {
        { request in
            switch (request.method, request.path) {
            case ("GET", "/crl"):
                return await crl(authority, issuer: nil)
            case ("GET", "/crl/all.pem"):
                do {
                    let pem = try await authority.allCRLs().map(\.pem).joined()
                        + authority.issuerSet.rootCRLs.map(\.pem).joined()
                    return HTTPResponse(status: 200, contentType: "application/x-pem-file", body: Array(pem.utf8))
                } catch {
                    return .text(500, "CRL unavailable")
                }
            case ("GET", let path) where path.hasPrefix("/crl/"):
                return await crl(authority, issuer: String(path.dropFirst("/crl/".count)))
            case ("POST", "/ocsp"), ("POST", "/"):
                return HTTPResponse(status: 200, contentType: "application/ocsp-response",
                                    body: await authority.ocspResponse(to: request.body))
            case ("GET", let path) where path.hasPrefix("/ocsp/"):
                let encoded = String(path.dropFirst("/ocsp/".count)).removingPercentEncoding ?? ""
                guard let der = Data(base64Encoded: encoded) else { return .text(400, "not a base64 OCSP request") }
                return HTTPResponse(status: 200, contentType: "application/ocsp-response",
                                    body: await authority.ocspResponse(to: Array(der)))
            case ("GET", "/metrics") where metrics != nil:
                return await metrics!()
            case ("GET", "/audit/checkpoint") where auditCheckpoints != nil:
                // The latest stored one: signing on demand is left to admins (GetAuditCheckpoint).
                do {
                    guard let latest = try await auditCheckpoints!.latest() else { return .text(404, "no audit checkpoint yet") }
                    return HTTPResponse(status: 200, contentType: "application/json", body: Array((latest.text + "\n").utf8))
                } catch {
                    return .text(500, "audit checkpoint unavailable")
                }
            case ("GET", "/healthz"):
                // Healthy when the PKCS#11 token (if the keys are in one) signs, the database answers
                // now (within the wait a request has) and the CA can produce its CRL: keys loaded and
                // the database readable. The token first: with it failed, the CRL is the last one signed.
                if let reason = token?.unhealthyReason {
                    return .text(503, "unhealthy: \(reason)")
                }
                do {
                    try await store.checkAvailable()
                } catch {
                    // The cause names the database and PostgreSQL's reason; it never holds the password.
                    let reason = (error as? AuthorityError)?.cause ?? "\(error)"
                    return .text(503, "unhealthy: database unavailable: \(reason)")
                }
                do {
                    _ = try await authority.currentCRL()
                    return .text(200, "ok")
                } catch {
                    return .text(503, "unhealthy: \(error)")
                }
            default:
                return .text(404, "Vouch CA: GET /crl, GET /crl/<issuer serial>, GET /crl/all.pem, POST /ocsp, GET /healthz, "
                              + "GET /metrics, GET /audit/checkpoint")
            }
        }
    }

    /// The DER CRL of `issuer` (an intermediate's hex serial; nil: the signing one).
    private static func crl(_ authority: CertificateAuthority, issuer: String?) async -> HTTPResponse {
        do {
            if let issuer, let root = try await authority.rootCRL(serial: issuer) {
                return HTTPResponse(status: 200, contentType: "application/pkix-crl", body: root.der)
            }
        } catch let error as AuthorityError where error.kind == .notFound {
            return .text(404, "that root has no CRL yet: run vouch ca root crl")
        } catch let error as AuthorityError where error.kind == .failedPrecondition {
            return .text(410, "that root is retired")
        } catch {
            return .text(500, "CRL unavailable")
        }
        do {
            let snapshot = try await authority.currentCRL(issuer: issuer)
            return HTTPResponse(status: 200, contentType: "application/pkix-crl", body: snapshot.der)
        } catch let error as AuthorityError where error.kind == .notFound || error.kind == .invalidArgument {
            return .text(404, "no intermediate with that serial")
        } catch let error as AuthorityError where error.kind == .failedPrecondition {
            return .text(410, "that intermediate is retired: its certificates have all expired")
        } catch let error as AuthorityError where error.kind == .unavailable {
            // This replica lacks that intermediate's key, or the database is down: another replica may answer.
            return .text(503, "CRL unavailable")
        } catch {
            return .text(500, "CRL unavailable")
        }
    }
}
