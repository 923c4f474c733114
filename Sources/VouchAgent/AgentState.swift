import Foundation
import Synchronization

/// What the agent reports about itself (status RPC, logs, quickstart output).
public struct AgentSnapshot: Sendable, Equatable {
    public var spiffeID = ""
    public var serial = ""
    public var notBefore: Date?
    public var notAfter: Date?
    public var lastRotation: Date?
    public var lastError = ""
    public var lastErrorAt: Date?
    public var rotations = 0
    public var failures = 0
    public var nextRenewal: Date?
    /// The CA replica the agent last got an answer from (`--ca` lists them).
    public var caAddress = ""
    /// The generation of the CA trust bundle last accepted (0: none since the start).
    public var trustGeneration: Int64 = 0
    /// SHA-256 of bundle.pem, and the serials of its roots.
    public var bundleSHA256: [UInt8] = []
    public var rootSerials: [String] = []
}

/// Thread-safe holder of the agent's snapshot.
public final class AgentState: Sendable {
    private let snapshot = Mutex(AgentSnapshot())

    public init() {}

    public var current: AgentSnapshot { snapshot.withLock { $0 } }

    func update(_ body: (inout AgentSnapshot) -> Void) {
        snapshot.withLock { body(&$0) }
    }
}
