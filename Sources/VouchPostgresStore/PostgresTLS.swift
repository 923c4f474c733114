import NIOSSL
import PostgresNIO

/// How the store protects its connections to PostgreSQL, as libpq's `sslmode` and `sslrootcert` do.
public struct PostgresTLS: Sendable, Equatable, CustomStringConvertible {
    public enum Mode: String, Sendable, CaseIterable {
        /// Plain TCP.
        case disable
        /// TLS if the server offers it, else plain TCP (libpq's default).
        case prefer
        /// TLS or no connection; the server's certificate is not checked unless a root file is given.
        case require
        /// TLS, the server's chain verified against the root file (required); any host name.
        case verifyCA = "verify-ca"
        /// TLS, the chain verified and the certificate valid for the host connected to.
        case verifyFull = "verify-full"
    }

    public var mode: Mode
    /// PEM trust roots for the server's certificate (`sslrootcert`); nil: the system's roots.
    public var rootCertificateFile: String?

    public init(mode: Mode, rootCertificateFile: String? = nil) {
        self.mode = mode
        self.rootCertificateFile = rootCertificateFile
    }

    public static let disable = PostgresTLS(mode: .disable)

    /// Whether the server's certificate is checked, so no one on the path can pose as the
    /// database (and read the password of a cleartext authentication).
    /// prefer never does: a man in the middle answers "no TLS" and it goes on in plain text.
    public var authenticatesServer: Bool {
        mode == .verifyFull || ((mode == .require || mode == .verifyCA) && rootCertificateFile != nil)
    }

    public var description: String {
        "sslmode=\(mode.rawValue)" + (rootCertificateFile.map { " sslrootcert=\($0)" } ?? "")
    }

    /// What NIOSSL checks of the server's certificate. As in libpq, a root file given to prefer or
    /// require makes them check the chain (verify-ca).
    var verification: CertificateVerification {
        switch mode {
        case .disable: .none
        case .prefer, .require: rootCertificateFile == nil ? .none : .noHostnameVerification
        case .verifyCA: .noHostnameVerification
        // Against the host name, or for an IP address against the certificate's IP SANs.
        case .verifyFull: .fullVerification
        }
    }

    /// The client TLS configuration, nil for plain TCP. Reads the root file, so a missing or
    /// unreadable one fails here, at start.
    func clientConfiguration() throws -> TLSConfiguration? {
        guard mode != .disable else { return nil }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = verification
        if let rootCertificateFile {
            do {
                let pem = try BoundedFile.read(rootCertificateFile, limit: 1 << 20, what: "sslrootcert")
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem)))
            } catch {
                throw PostgresStoreError("sslrootcert \(rootCertificateFile)", "cannot read PEM certificates: \(error)")
            }
        }
        return configuration
    }

    func clientTLS() throws -> PostgresClient.Configuration.TLS {
        guard let configuration = try clientConfiguration() else { return .disable }
        return mode == .prefer ? .prefer(configuration) : .require(configuration)
    }

    func connectionTLS() throws -> PostgresConnection.Configuration.TLS {
        guard let configuration = try clientConfiguration() else { return .disable }
        let context = try NIOSSLContext(configuration: configuration)
        return mode == .prefer ? .prefer(context) : .require(context)
    }
}

extension PostgresTLS {
    /// What a TLS failure at connect means, in words, or nil for any other failure.
    func explain(_ failure: String, host: String) -> String? {
        if failure.contains("failedToValidateHostname") {
            return "the server's certificate is not valid for \(host) (sslmode=verify-full checks the host name; "
                + "verify-ca does not)"
        }
        if failure.contains("CERTIFICATE_VERIFY_FAILED") {
            return "the server's certificate is not signed by a trusted root (\(rootCertificateFile ?? "the system's roots"))"
        }
        if failure.contains("sslUnsupported") {
            return "the server does not offer TLS (sslmode=\(mode.rawValue) requires it)"
        }
        return nil
    }
}
