import Foundation
import VouchAPI
import VouchConnectionLimits
import VouchCrypto
import VouchTLS

/// Everything `vouch agent` is told on its command line.
public struct AgentConfiguration: Sendable {
    /// The CA replicas, tried in turn from the one that last answered (`--ca A,B`).
    public var caAddresses: CAAddressList
    /// The first CA address; setting it leaves only that one.
    public var caAddress: HostPort {
        get { caAddresses.first }
        set { caAddresses = CAAddressList(newValue) }
    }
    /// Trust bundle used to verify the CA server at enrollment; later, the roots the agent holds
    /// (bundle.pem) must be in it or endorsed by one in it.
    public var caBundlePath: String
    /// One-time token for the first enrollment (or re-enrollment after expiry).
    public var tokenFilePath: String?
    public var outDirectory: String
    /// Local mTLS status server address, if any.
    public var listen: HostPort?
    /// Requested certificate lifetime; zero lets the CA choose.
    public var certificateTTL: Duration
    /// Renew when this fraction of the lifetime has passed.
    public var renewFraction: Double
    /// Spread of renewal times, as a fraction of the lifetime, so agents do not renew in lockstep.
    public var jitterFraction: Double
    public var keyAlgorithm: KeyAlgorithm
    /// Shell command run after each rotation.
    public var execCommand: String?
    /// Signal sent after each rotation to the process in `pidFile`.
    public var signal: Int32?
    public var pidFile: String?
    /// Wait after the first failed renewal; it doubles with each further failure up to the maximum.
    public var minimumBackoff: Duration
    public var maximumBackoff: Duration
    /// Deadline for every call to the CA.
    public var rpcTimeout: Duration
    /// How often the CRL is fetched as a fallback to the revocation stream.
    public var crlRefreshInterval: Duration
    /// Timeouts and connection cap of the local gRPC listener and the metrics listener.
    public var listenerLimits = ListenerLimits()
    /// Longest an `execCommand` may run before its process group is killed.
    public var hookTimeout: Duration = .seconds(30)
    /// If set, the pid file's process must have this name (/proc/PID/comm) to be signalled.
    public var signalProcessName: String?
    /// Changes within this time of the first one run the hooks once, together (`--hook-debounce`; zero: at once).
    public var hookDebounce: Duration = .seconds(1)
    /// The kinds of file change that run the hooks (`--hook-on`).
    public var hookOn: FileChange = .all
    /// The SPIFFE ID the CA server must present; nil: `spiffe://<own trust domain>/vouch/server`.
    public var caServerID: String?
    /// The files written in `outDirectory` and their names (`--file KIND=NAME`).
    public var outputFileNames = OutputFileNames.defaults
    /// The password of the PKCS#12 keystore and truststore (`--pkcs12-password-file`).
    public var keystorePassword: String?
    /// How often the agent reports to the CA when nothing changed (`--heartbeat`; zero: only on changes).
    public var heartbeat: Duration = .seconds(300)
    /// Where and for whom the SPIFFE Workload API is served (`--workload-api`); nil: not served.
    public var workloadAPI: WorkloadAPIConfiguration?

    public init(caAddress: HostPort, caBundlePath: String, tokenFilePath: String?, outDirectory: String,
                listen: HostPort? = nil, certificateTTL: Duration = .zero, renewFraction: Double = 2.0 / 3.0,
                jitterFraction: Double = 0.05, keyAlgorithm: KeyAlgorithm = .p256, execCommand: String? = nil,
                signal: Int32? = nil, pidFile: String? = nil, minimumBackoff: Duration = .seconds(1),
                maximumBackoff: Duration = .seconds(30), rpcTimeout: Duration = .seconds(10), crlRefreshInterval: Duration = .seconds(60)) {
        self.caAddresses = CAAddressList(caAddress)
        self.caBundlePath = caBundlePath
        self.tokenFilePath = tokenFilePath
        self.outDirectory = outDirectory
        self.listen = listen
        self.certificateTTL = certificateTTL
        self.renewFraction = renewFraction
        self.jitterFraction = jitterFraction
        self.keyAlgorithm = keyAlgorithm
        self.execCommand = execCommand
        self.signal = signal
        self.pidFile = pidFile
        self.minimumBackoff = minimumBackoff
        self.maximumBackoff = maximumBackoff
        self.rpcTimeout = rpcTimeout
        self.crlRefreshInterval = crlRefreshInterval
    }
}

extension Duration {
    /// This duration in seconds, for arithmetic with `Date`.
    var timeInterval: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }

    /// Whole seconds, as the CA's `ttl_seconds` fields take them.
    var wholeSeconds: Int64 { components.seconds }
}
