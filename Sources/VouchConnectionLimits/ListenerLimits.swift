import Glibc

/// What every Vouch listener allows a connection, so that clients which connect and then stall
/// cannot hold sockets (and the process's file descriptors) for ever.
public struct ListenerLimits: Sendable, Hashable {
    /// Time a new connection has to finish its TLS handshake (gRPC listeners) or to send its
    /// request headers (HTTP listeners). An HTTP request body then gets as long again.
    public var handshakeTimeout: Duration
    /// gRPC: a connection with no RPC in flight for this long is closed, and one whose peer sends
    /// nothing for this long (keepalive pings go unanswered) is dropped. HTTP: a connection that
    /// reads and writes nothing for this long is dropped.
    public var idleTimeout: Duration
    /// Connections one listener keeps open at once; further ones are closed as they are accepted.
    public var maxConnections: Int

    public init(handshakeTimeout: Duration = Self.defaultHandshakeTimeout, idleTimeout: Duration = Self.defaultIdleTimeout,
                maxConnections: Int = Self.defaultMaxConnections) {
        self.handshakeTimeout = handshakeTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
    }

    public static let defaultHandshakeTimeout = Duration.seconds(10)
    public static let defaultIdleTimeout = Duration.seconds(300)

    /// 1000, or a quarter of the open-file limit when that is lower: a process runs up to three
    /// listeners, and full ones must still leave descriptors for the database, files and the others.
    public static var defaultMaxConnections: Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return 1000 }
        return max(16, min(1000, Int(limit.rlim_cur / 4)))
    }
}
