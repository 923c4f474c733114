import Foundation
import VouchAuthority

/// Where a PostgreSQL database is and how to reach it, from a URL such as
/// `postgres://vouch@db.internal:5432/vouch?sslmode=verify-full&sslrootcert=/etc/vouch/pg-root.pem`.
/// The URL never carries the password: a command line shows in `ps`, and URLs end up in logs.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var database: String
    public var tls: PostgresTLS

    public static let defaultPort = 5432
    static let parameters = ["sslmode", "sslrootcert"]

    public init(host: String, port: Int = defaultPort, user: String, database: String, tls: PostgresTLS = PostgresTLS(mode: .prefer)) {
        (self.host, self.port, self.user, self.database, self.tls) = (host, port, user, database, tls)
    }

    /// Parses `postgres://USER@HOST[:PORT][/DATABASE][?sslmode=MODE&sslrootcert=FILE]` (also
    /// `postgresql://`). As in libpq, the port defaults to 5432, the database to the user's name and
    /// sslmode to prefer. Refuses a URL with a password, and parameters it does not know.
    public init(parsing text: String) throws {
        // Whatever is wrong, the message never repeats the text: it may hold a password.
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              ["postgres", "postgresql"].contains(scheme) else {
            throw PostgresURLError("not a postgres://USER@HOST[:PORT]/DATABASE URL")
        }
        guard components.password == nil else {
            throw PostgresURLError("the database URL must not carry a password (it would show in `ps` and in logs); "
                + "put it in a file named by --database-password-file (database_password_file:), or in PGPASSWORD or ~/.pgpass")
        }
        guard var host = components.host, !host.isEmpty else {
            throw PostgresURLError("the database URL names no host (postgres://USER@HOST[:PORT]/DATABASE)")
        }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let user = components.user?.removingPercentEncoding, !user.isEmpty else {
            throw PostgresURLError("the database URL names no user (postgres://USER@HOST[:PORT]/DATABASE)")
        }
        let path = components.percentEncodedPath.drop(while: { $0 == "/" })
        guard !path.contains("/"), let database = String(path).removingPercentEncoding else {
            throw PostgresURLError("the database URL's path must be one database name")
        }
        guard components.fragment == nil else { throw PostgresURLError("the database URL must not have a #fragment") }
        // A NUL would end the name early in PostgreSQL's startup message and let the rest pass as
        // settings of the caller's choosing.
        guard !(user + database).unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw PostgresURLError("the database URL's user or database name holds a control character")
        }
        var tls = PostgresTLS(mode: .prefer)
        var seen = Set<String>()
        for item in components.queryItems ?? [] {
            guard Self.parameters.contains(item.name) else {
                throw PostgresURLError("unknown database URL parameter \(AuthorityError.quoted(item.name, limit: 40)) (known: \(Self.parameters.joined(separator: ", ")))")
            }
            guard seen.insert(item.name).inserted else { throw PostgresURLError("database URL parameter \(item.name) given twice") }
            let value = item.value ?? ""
            switch item.name {
            case "sslmode":
                guard let mode = PostgresTLS.Mode(rawValue: value) else {
                    let known = PostgresTLS.Mode.allCases.map(\.rawValue).joined(separator: ", ")
                    throw PostgresURLError("sslmode \(AuthorityError.quoted(value, limit: 40)) is not supported (use one of \(known))")
                }
                tls.mode = mode
            default:
                guard !value.isEmpty else { throw PostgresURLError("sslrootcert needs a file") }
                tls.rootCertificateFile = value
            }
        }
        if tls.mode == .disable, tls.rootCertificateFile != nil {
            throw PostgresURLError("sslrootcert is given but sslmode=disable turns TLS off")
        }
        // Against the system's public roots with no host name check, any publicly trusted
        // certificate for any host would pass (libpq refuses this too).
        if tls.mode == .verifyCA, tls.rootCertificateFile == nil {
            throw PostgresURLError("sslmode=verify-ca needs sslrootcert=FILE, the CA that signed the database's certificate "
                + "(use sslmode=verify-full to check the host name against the system's roots)")
        }
        self.init(host: host, port: components.port ?? Self.defaultPort, user: user, database: database.isEmpty ? user : database, tls: tls)
        guard (1...65535).contains(port) else { throw PostgresURLError("the database URL's port must be 1-65535") }
    }

    /// The URL as it may be logged (it never holds a password).
    public var description: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        var query = ["sslmode=\(tls.mode.rawValue)"]
        if let root = tls.rootCertificateFile { query.append("sslrootcert=\(root)") }
        return "postgres://\(user)@\(hostPart):\(port)/\(database)?\(query.joined(separator: "&"))"
    }
}

public struct PostgresURLError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
