import NIOCore
import Synchronization

/// Sits on a listening channel and closes accepted connections beyond `limit` before anything
/// else sees them. `onLimitReached` hears about refusals at most once per `reportInterval`, with
/// how many were refused since it last heard, so a flood does not flood the log too.
public final class ConnectionCapHandler: ChannelInboundHandler {
    public typealias InboundIn = any Channel
    public typealias InboundOut = any Channel

    private let counter: OpenConnectionCounter
    private let gate: AcceptGate
    private let onLimitReached: @Sendable (_ limit: Int, _ refused: Int) -> Void

    public init(limit: Int, reportInterval: Duration = .seconds(10), gate: AcceptGate = AcceptGate(),
                onLimitReached: @escaping @Sendable (_ limit: Int, _ refused: Int) -> Void) {
        self.counter = OpenConnectionCounter(limit: limit, reportInterval: TimeAmount(reportInterval))
        self.gate = gate
        self.onLimitReached = onLimitReached
    }

    /// Connections this listener has open now.
    public var openConnections: Int { counter.open }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        // Once the server is shutting down, a connection accepted now would outlive the transport
        // that should serve it: close it before anything is built on it.
        guard gate.isOpen else {
            child.close(promise: nil)
            return
        }
        switch counter.admit() {
        case .admitted:
            child.closeFuture.whenComplete { [counter] _ in counter.release() }
            context.fireChannelRead(data)
        case .refused(let report):
            child.close(promise: nil)
            if let report { onLimitReached(counter.limit, report) }
        }
    }
}

/// Open connections of one listener; accepts and closes happen on different event loops.
final class OpenConnectionCounter: Sendable {
    enum Decision { case admitted, refused(report: Int?) }

    let limit: Int
    let reportInterval: TimeAmount
    private let state = Mutex((open: 0, refusedSinceReport: 0, lastReport: NIODeadline.distantPast))

    init(limit: Int, reportInterval: TimeAmount) {
        self.limit = limit
        self.reportInterval = reportInterval
    }

    var open: Int { state.withLock { $0.open } }

    func admit() -> Decision {
        state.withLock { state in
            if state.open < limit {
                state.open += 1
                return .admitted
            }
            state.refusedSinceReport += 1
            let now = NIODeadline.now()
            guard now - state.lastReport >= reportInterval else { return .refused(report: nil) }
            defer { state.refusedSinceReport = 0 }
            state.lastReport = now
            return .refused(report: state.refusedSinceReport)
        }
    }

    func release() {
        state.withLock { $0.open -= 1 }
    }
}
