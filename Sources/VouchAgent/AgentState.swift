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
