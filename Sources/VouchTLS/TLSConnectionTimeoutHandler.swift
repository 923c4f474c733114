import NIOCore
import NIOSSL
import NIOTLS

/// Placed right after the TLS handler of an accepted connection: closes it when the TLS handshake
/// has not completed within `handshakeTimeout` of the accept (a client that connects and sends
/// nothing, or stalls mid-handshake), and afterwards when the peer has sent nothing for
/// `idleTimeout`. Live gRPC peers are never that silent: the transport pings them (keepalive)
/// more often and they answer; a half-open or stuck one does not.
final class TLSConnectionTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny

    private let handshakeTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private var handshakeDeadline: Scheduled<Void>?
    private var idleCheck: Scheduled<Void>?
    private var lastRead = NIODeadline.now()
    private var handshakeCompleted = false

    init(handshakeTimeout: TimeAmount, idleTimeout: TimeAmount) {
        self.handshakeTimeout = handshakeTimeout
        self.idleTimeout = idleTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // Added while the connection is being set up; the clock starts at the accept.
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        handshakeDeadline = context.eventLoop.scheduleTask(in: handshakeTimeout) {
            loopBound.value.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event, !handshakeCompleted {
            handshakeCompleted = true
            handshakeDeadline?.cancel()
            handshakeDeadline = nil
            lastRead = .now()
            scheduleIdleCheck(context: context, in: idleTimeout)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastRead = .now()
        context.fireChannelRead(data)
    }

    /// One timer per connection, re-armed for the remainder when reads happened meanwhile.
    private func scheduleIdleCheck(context: ChannelHandlerContext, in delay: TimeAmount) {
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        idleCheck = context.eventLoop.scheduleTask(in: delay) {
            let (handler, context) = loopBound.value
            let silence = NIODeadline.now() - handler.lastRead
            if silence >= handler.idleTimeout {
                context.close(promise: nil)
            } else {
                handler.scheduleIdleCheck(context: context, in: handler.idleTimeout - silence)
            }
        }
    }

    private func cancelTimers() {
        handshakeDeadline?.cancel()
        handshakeDeadline = nil
        idleCheck?.cancel()
        idleCheck = nil
    }
}
