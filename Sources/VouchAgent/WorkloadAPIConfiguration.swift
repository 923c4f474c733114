import Foundation

/// `--workload-api unix:///PATH` and its companions: where the agent serves the SPIFFE Workload
/// API, and who may reach it. The socket hands out the agent's private key, so by default only
/// the socket's owner (the agent's user) can connect.
public struct WorkloadAPIConfiguration: Sendable, Equatable {
    /// The socket's path, from the `unix:` URI.
    public var socketPath: String
    /// The socket file's permission bits (`--workload-api-mode`, default 0600).
    public var mode: mode_t = 0o600
    /// The socket file's owner and group (`--workload-api-owner USER[:GROUP]`); nil: the agent's own.
    public var owner: uid_t?
    public var group: gid_t?
    /// Callers (by the uid the kernel reports for the connecting process) allowed to connect;
    /// empty: anyone who can open the socket.
    public var allowedUIDs: Set<uid_t> = []

    public init(socketPath: String) { self.socketPath = socketPath }

    /// sun_path holds 108 bytes with the terminating zero.
    public static let maxPathBytes = 107

    /// The path of a `unix:` URI as SPIFFE libraries take it: `unix:///abs/path` or `unix:/abs/path`.
    /// A TCP address, a bare path, an authority (`unix://host/...`), a query or fragment, and a path
    /// too long for a socket address are refused with the reason.
    public static func socketPath(fromURI uri: String) throws -> String {
        guard let colon = uri.firstIndex(of: ":"), !uri.hasPrefix("/") else {
            throw WorkloadAPIConfigurationError("--workload-api \(uri): expected a unix: URI such as unix:///run/vouch/agent.sock")
        }
        let scheme = uri[..<colon].lowercased()
        guard scheme == "unix" else {
            throw WorkloadAPIConfigurationError("--workload-api \(uri): only unix: sockets are served (not \(scheme):)")
        }
        var rest = uri[uri.index(after: colon)...]
        if rest.hasPrefix("//") {
            rest = rest.dropFirst(2)
            guard rest.hasPrefix("/") else {
                throw WorkloadAPIConfigurationError("--workload-api \(uri): a unix: URI has no host; write unix:///absolute/path")
            }
        }
        guard rest.hasPrefix("/"), rest.count > 1 else {
            throw WorkloadAPIConfigurationError("--workload-api \(uri): the socket path must be absolute, e.g. unix:///run/vouch/agent.sock")
        }
        guard !rest.contains("?"), !rest.contains("#"), !rest.contains("\0") else {
            throw WorkloadAPIConfigurationError("--workload-api \(uri): a query, fragment or NUL byte is not allowed")
        }
        let path = String(rest)
        guard path.utf8.count <= maxPathBytes else {
            throw WorkloadAPIConfigurationError("--workload-api \(uri): the path is \(path.utf8.count) bytes; "
                + "a Unix socket path holds at most \(maxPathBytes)")
        }
        return path
    }

    /// `--workload-api-mode`: octal permission bits, e.g. 0600 or 660.
    public static func mode(fromOctal text: String) throws -> mode_t {
        guard !text.isEmpty, text.count <= 4, let value = mode_t(text, radix: 8), value <= 0o777 else {
            throw WorkloadAPIConfigurationError("--workload-api-mode \(text): expected octal permission bits such as 0600 or 0660")
        }
        return value
    }

    /// `--workload-api-allow-uid 0,1000`: the uids allowed to connect.
    public static func uids(fromList list: String) throws -> Set<uid_t> {
        var uids: Set<uid_t> = []
        for part in list.split(separator: ",", omittingEmptySubsequences: false) {
            let text = part.trimmingCharacters(in: .whitespaces)
            guard let uid = uid_t(text), uid != uid_t.max else {
                throw WorkloadAPIConfigurationError("--workload-api-allow-uid \(list): \"\(text)\" is not a numeric uid")
            }
            uids.insert(uid)
        }
        return uids
    }

    /// `--workload-api-owner USER[:GROUP]`, names or numbers, looked up in the user and group databases.
    public static func owner(from text: String) throws -> (uid: uid_t, gid: gid_t?) {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let user = parts.first, !user.isEmpty else {
            throw WorkloadAPIConfigurationError("--workload-api-owner \(text): expected USER or USER:GROUP")
        }
        guard let uid = uid_t(user) ?? getpwnam(user).map({ $0.pointee.pw_uid }) else {
            throw WorkloadAPIConfigurationError("--workload-api-owner \(text): no user \(user)")
        }
        guard parts.count == 2 else { return (uid, nil) }
        let groupName = parts[1]
        guard !groupName.isEmpty, let gid = gid_t(groupName) ?? getgrnam(groupName).map({ $0.pointee.gr_gid }) else {
            throw WorkloadAPIConfigurationError("--workload-api-owner \(text): no group \(groupName)")
        }
        return (uid, gid)
    }
}

public struct WorkloadAPIConfigurationError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
