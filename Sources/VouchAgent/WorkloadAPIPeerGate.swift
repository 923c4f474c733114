import CVouchOpenSSL
import Glibc
import Logging
import NIOCore
import VouchAPI

/// Sits on the Workload API's listening socket and closes each accepted connection whose peer's
/// uid (as the kernel reports it, SO_PEERCRED) is not allowed, before any HTTP/2 or gRPC handler
/// sees it. Per-RPC code cannot tell callers apart: every one has the same `unix:` address.
final class WorkloadAPIPeerGate: ChannelInboundHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    let allowedUIDs: Set<uid_t>
    let logger: Logger
    /// Any local user may connect again and again: a flood costs a summary, not the disk.
    let refusals = RateLimitedLog(burst: 20, perSecond: 1)

    init(allowedUIDs: Set<uid_t>, logger: Logger) {
        self.allowedUIDs = allowedUIDs
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        guard let socket = child as? any SocketOptionProvider else {
            child.close(promise: nil)
            return
        }
        let allowed = allowedUIDs, logger = logger, refusals = refusals
        let credentials: EventLoopFuture<vouch_peer_credentials> =
            socket.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        credentials.hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let peer) where allowed.contains(peer.uid):
                context.fireChannelRead(data)
            case .success(let peer):
                refusals.log(logger, .warning, "workload API: refused a caller whose uid is not in --workload-api-allow-uid",
                             metadata: ["pid": "\(peer.pid)", "uid": "\(peer.uid)", "gid": "\(peer.gid)"])
                child.close(promise: nil)
            case .failure(let error):
                refusals.log(logger, .warning, "workload API: refused a caller whose credentials could not be read",
                             metadata: ["error": "\(error)"])
                child.close(promise: nil)
            }
        }
    }
}
