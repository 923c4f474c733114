import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import VouchConnectionLimits

/// A request as the endpoint's handler sees it.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path without the query string.
    public var path: String
    /// What follows the first `?` of the request target, undecoded; empty without one.
    public var query: String
    /// The Host header; nil without exactly one.
    public var host: String?
    public var contentType: String?
    public var body: [UInt8]

    public init(method: String, path: String, query: String = "", host: String? = nil,
                contentType: String? = nil, body: [UInt8] = []) {
        self.method = method
        self.path = path
        self.query = query
        self.host = host
        self.contentType = contentType
        self.body = body
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]
    /// Written after Content-Type, e.g. Content-Security-Policy, Set-Cookie, Location.
    public var headers: [(name: String, value: String)]

    public init(status: Int, contentType: String, body: [UInt8], headers: [(name: String, value: String)] = []) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.headers = headers
    }

    public static func text(_ status: Int, _ text: String) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array((text + "\n").utf8))
    }
}

/// A plain HTTP/1.1 endpoint as a ServiceLifecycle service, for software that
/// fetches CRLs, asks OCSP or scrapes metrics over HTTP. Each request is
/// answered by an async handler; bodies over 64 KiB are refused. A client gets
/// `limits.handshakeTimeout` to send its request headers and as long again for
/// the body, a connection that moves no bytes for `limits.idleTimeout` is
/// dropped, and at most `limits.maxConnections` are open at once.
public final class HTTPEndpoint: Service, Sendable {
    let host: String
    let port: Int
    let limits: ListenerLimits
    let handler: @Sendable (HTTPRequest) async -> HTTPResponse
    let onListening: @Sendable (Int) -> Void
    let onLimitReached: @Sendable (_ limit: Int, _ refused: Int) -> Void

    public static let maxBodyBytes = 64 * 1024

    /// `onLimitReached` hears, at most every 10 s, that the connection cap refused connections.
    public init(host: String, port: Int, limits: ListenerLimits = ListenerLimits(),
                onLimitReached: @escaping @Sendable (_ limit: Int, _ refused: Int) -> Void = { _, _ in },
                onListening: @escaping @Sendable (Int) -> Void = { _ in },
                handler: @escaping @Sendable (HTTPRequest) async -> HTTPResponse) {
        self.host = host
        self.port = port
        self.limits = limits
        self.handler = handler
        self.onListening = onListening
        self.onLimitReached = onLimitReached
    }

    public func run() async throws {
        let handler = self.handler, limits = self.limits, onLimitReached = self.onLimitReached
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Out of descriptors, accepting backs off instead of spinning.
                    try channel.pipeline.syncOperations.addHandler(AcceptBackoffHandler())
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionCapHandler(limit: limits.maxConnections, onLimitReached: onLimitReached))
                }
            }
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: TimeAmount(limits.idleTimeout)))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPRequestHandler(handler: handler, readTimeout: TimeAmount(limits.handshakeTimeout)))
                }
            }
            .bind(host: host, port: port).get()
        onListening(channel.localAddress?.port ?? port)
        await untilShutdown()
        try? await channel.close()
    }
}

final class HTTPRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let handler: @Sendable (HTTPRequest) async -> HTTPResponse
    /// For the headers from the accept, then for the body from the headers.
    let readTimeout: TimeAmount
    private var readDeadline: Scheduled<Void>?
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(handler: @escaping @Sendable (HTTPRequest) async -> HTTPResponse, readTimeout: TimeAmount) {
        self.handler = handler
        self.readTimeout = readTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        startReadDeadline(context: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        readDeadline?.cancel()
    }

    /// A request that does not arrive in time is not answered: the connection is closed.
    private func startReadDeadline(context: ChannelHandlerContext) {
        readDeadline?.cancel()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        readDeadline = context.eventLoop.scheduleTask(in: readTimeout) { loopBound.value.close(promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
            tooLarge = false
            startReadDeadline(context: context)
        case .body(var buffer):
            if body.count + buffer.readableBytes > HTTPEndpoint.maxBodyBytes {
                tooLarge = true
            } else if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body += bytes
            }
        case .end:
            readDeadline?.cancel()
            readDeadline = nil
            guard let head else { return }
            let target = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
            let hosts = head.headers["Host"]
            let request = HTTPRequest(method: head.method.rawValue, path: String(target.first ?? ""),
                                      query: target.count > 1 ? String(target[1]) : "", host: hosts.count == 1 ? hosts[0] : nil,
                                      contentType: head.headers["Content-Type"].first, body: body)
            let promise = context.eventLoop.makePromise(of: HTTPResponse.self)
            if tooLarge {
                promise.succeed(.text(413, "request body over \(HTTPEndpoint.maxBodyBytes) bytes"))
            } else {
                let handler = self.handler
                promise.completeWithTask { await handler(request) }
            }
            let version = head.version
            // Completed on the channel's event loop, where the handler and its context live.
            let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
            promise.futureResult.whenSuccess { response in
                let (handler, context) = bound.value
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: response.contentType)
                for header in response.headers { headers.add(name: header.name, value: header.value) }
                headers.add(name: "Content-Length", value: String(response.body.count))
                headers.add(name: "Connection", value: "close")
                let status = HTTPResponseStatus(statusCode: response.status)
                context.write(handler.wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
                context.write(handler.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: response.body)))), promise: nil)
                context.writeAndFlush(handler.wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.context.close(promise: nil) }
            }
        }
    }
}
