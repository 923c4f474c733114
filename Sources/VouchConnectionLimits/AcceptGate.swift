import Synchronization

/// Open while a listener takes new connections; closed when its server begins to shut down,
/// so connections that arrive while it drains are refused at accept.
public final class AcceptGate: Sendable {
    private let open = Atomic<Bool>(true)

    public init() {}

    public var isOpen: Bool { open.load(ordering: .acquiring) }

    public func close() { open.store(false, ordering: .releasing) }
}
