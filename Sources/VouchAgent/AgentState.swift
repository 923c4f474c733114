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
    /// The certificate the agent's listener serves since its last reload (svid.pem's without --listen):
    /// what the fleet report names, which differs from `serial` while a reload fails.
    public var servingSerial = ""
    public var servingNotAfter: Date?
}

/// Thread-safe holder of the agent's snapshot.
public final class AgentState: Sendable {
    private let snapshot = Mutex(AgentSnapshot())
    /// Told of each change, outside the lock (the fleet reporter reports what changed).
    private let observers = Mutex<[@Sendable (_ before: AgentSnapshot, _ after: AgentSnapshot) -> Void]>([])

    public init() {}

    public var current: AgentSnapshot { snapshot.withLock { $0 } }

    func update(_ body: (inout AgentSnapshot) -> Void) {
        let (before, after) = snapshot.withLock { snapshot in
            let before = snapshot
            body(&snapshot)
            return (before, snapshot)
        }
        guard before != after else { return }
        for observer in observers.withLock({ $0 }) { observer(before, after) }
    }

    /// Calls `body` after each update that changed the snapshot, with the snapshot before and after.
    func observe(_ body: @escaping @Sendable (_ before: AgentSnapshot, _ after: AgentSnapshot) -> Void) {
        observers.withLock { $0.append(body) }
    }
}
