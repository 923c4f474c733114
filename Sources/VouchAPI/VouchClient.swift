import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2

/// Opens a gRPC connection to a Vouch CA over TLS 1.3, presenting a client
/// certificate when one is given, and trusting only the given bundle.
public enum VouchClient {
    public struct Credentials: Sendable {
        public var bundlePEMPath: String
        public var certificatePEMPath: String?
        public var keyPEMPath: String?

        public init(bundlePEMPath: String, certificatePEMPath: String? = nil, keyPEMPath: String? = nil) {
            self.bundlePEMPath = bundlePEMPath
            self.certificatePEMPath = certificatePEMPath
            self.keyPEMPath = keyPEMPath
        }
    }

    public static func transport(server: HostPort, credentials: Credentials) throws -> HTTP2ClientTransport.Posix {
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
        try await withGRPCClient(transport: try transport(server: server, credentials: credentials)) { client in
            try await body(client)
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
