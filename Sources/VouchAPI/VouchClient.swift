import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchIdentityRules
import VouchTLS

/// Opens a gRPC connection to a Vouch CA over TLS 1.3, presenting a client
/// certificate when one is given, trusting only the given bundle, and talking
/// only to a server whose certificate carries the expected SPIFFE ID.
public enum VouchClient {
    public struct Credentials: Sendable {
        public var bundlePEMPath: String
        public var certificatePEMPath: String?
        public var keyPEMPath: String?
        /// Whom the server must be: the CA server's SPIFFE ID unless told otherwise
        /// (e.g. an agent's own ID when talking to its local listener).
        public var serverIdentity: ServerIdentity
        /// Whether a certificate of the server's validated chain is revoked by its issuer (the
        /// root CRLs an agent holds); nil: no such list.
        public var isRevokedByIssuer: PeerCertificateVerifier.RevokedByIssuer?

        public init(bundlePEMPath: String, certificatePEMPath: String? = nil, keyPEMPath: String? = nil,
                    serverIdentity: ServerIdentity = .vouchServer(trustDomain: nil)) {
            self.bundlePEMPath = bundlePEMPath
            self.certificatePEMPath = certificatePEMPath
            self.keyPEMPath = keyPEMPath
            self.serverIdentity = serverIdentity
        }
    }

    /// A transport whose handshakes are checked by `verifier`.
    public static func transport(server: HostPort, credentials: Credentials) throws -> HTTP2ClientTransport.Posix {
        try transport(server: server, credentials: credentials, verifier: try verifier(server: server, credentials: credentials))
    }

    static func verifier(server: HostPort, credentials: Credentials) throws -> ServerCertificateVerifier {
        let bundle: String
        do {
            bundle = try String(contentsOfFile: credentials.bundlePEMPath, encoding: .utf8)
        } catch {
            throw RPCError(code: .failedPrecondition, message: "cannot read trust bundle \(credentials.bundlePEMPath)")
        }
        return try ServerCertificateVerifier(rootsPEM: bundle, host: server.host,
                                             isIPAddress: server.isIPv6 || HostPort.isIPv4Literal(server.host),
                                             expected: credentials.serverIdentity,
                                             isRevokedByIssuer: credentials.isRevokedByIssuer ?? { _, _ in false })
    }

    static func transport(server: HostPort, credentials: Credentials, verifier: ServerCertificateVerifier) throws
        -> HTTP2ClientTransport.Posix {
        let target: any ResolvableTarget
        if server.isIPv6 {
            target = .ipv6(address: server.host, port: server.port)
        } else if HostPort.isIPv4Literal(server.host) {
            target = .ipv4(address: server.host, port: server.port)
        } else {
            target = .dns(host: server.host, port: server.port)
        }
        let configure: (inout HTTP2ClientTransport.Posix.TransportSecurity.TLS) -> Void = { tls in
            tls.trustRoots = .certificates([.file(path: credentials.bundlePEMPath, format: .pem)])
            tls.customVerificationCallback = { certificates, promise in verifier.verify(certificates, promise) }
        }
        let security: HTTP2ClientTransport.Posix.TransportSecurity
        if let cert = credentials.certificatePEMPath, let key = credentials.keyPEMPath {
            security = .mTLS(certificateChain: [.file(path: cert, format: .pem)], privateKey: .file(path: key, format: .pem),
                             configure: configure)
        } else {
            security = .tls(configure: configure)
        }
        return try HTTP2ClientTransport.Posix(target: target, transportSecurity: security,
                                              config: .defaults { $0.connection.maxIdleTime = .seconds(60) })
    }

    /// Runs `body` with a connected client and closes it afterwards.
    public static func with<Result: Sendable>(
        server: HostPort, credentials: Credentials,
        _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
        let verifier = try verifier(server: server, credentials: credentials)
        do {
            return try await withGRPCClientClosedOnCancel(transport: try transport(server: server, credentials: credentials, verifier: verifier)) { client in
                try await body(client)
            }
        } catch let error as RPCError where error.code == .unavailable {
            // TLS failures surface as a closed connection; say what the check refused.
            guard let rejection = verifier.lastRejection else { throw error }
            throw RPCError(code: .unavailable, message: "refusing the server: \(rejection)", cause: error)
        }
    }

    /// Call options with a deadline, so no call waits forever on a dead server.
    public static func options(timeout: Duration = .seconds(30)) -> CallOptions {
        var options = CallOptions.defaults
        options.timeout = timeout
        return options
    }
}

extension HostPort {
    static func isIPv4Literal(_ host: String) -> Bool {
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
    }
}
