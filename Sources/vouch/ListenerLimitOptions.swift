import ArgumentParser
import Logging
import VouchConnectionLimits

/// `--handshake-timeout`, `--idle-timeout` and `--max-connections`, shared by every listener of
/// `vouch server` and `vouch agent`.
struct ListenerLimitOptions: ParsableArguments {
    @Option(help: "Time a new connection has to finish its TLS handshake or send its HTTP request headers (default 10s).")
    var handshakeTimeout: DurationArgument?

    @Option(help: "Close connections with no RPC in flight, or whose peer is silent, for this long (default 5m).")
    var idleTimeout: DurationArgument?

    @Option(help: "Connections each listener keeps open at once; more are refused (default 1000, or a quarter of the open-file limit).")
    var maxConnections: Int?

    /// Flags over the config file's keys (in `section`) over the defaults.
    func resolved(handshake: String?, idle: String?, maxConnections fileMaxConnections: Int?, section: String) throws -> ListenerLimits {
        let handshake = try handshakeTimeout ?? configDuration(handshake, key: "\(section).handshake_timeout")
        let idle = try idleTimeout ?? configDuration(idle, key: "\(section).idle_timeout")
        var limits = ListenerLimits()
        if let handshake {
            guard handshake.seconds > 0 else { throw CLIError("--handshake-timeout must be positive") }
            limits.handshakeTimeout = .seconds(handshake.seconds)
        }
        if let idle {
            guard idle.seconds > 0 else { throw CLIError("--idle-timeout must be positive") }
            limits.idleTimeout = .seconds(idle.seconds)
        }
        if let maxConnections = maxConnections ?? fileMaxConnections {
            guard maxConnections > 0 else { throw CLIError("--max-connections must be positive") }
            limits.maxConnections = maxConnections
        }
        return limits
    }
}

/// Logs that a listener's connection cap refused connections (called at most every 10 s).
func connectionLimitLogger(_ logger: Logger, listener: String) -> @Sendable (_ limit: Int, _ refused: Int) -> Void {
    { limit, refused in
        logger.warning("connection limit reached: refusing new connections",
                       metadata: ["listener": "\(listener)", "max_connections": "\(limit)", "refused": "\(refused)"])
    }
}
