import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// A request as the endpoint's handler sees it.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path without the query string.
    public var path: String
    public var contentType: String?
    public var body: [UInt8]
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]

    public init(status: Int, contentType: String, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public static func text(_ status: Int, _ text: String) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array((text + "\n").utf8))
    }
}

/// A plain HTTP/1.1 endpoint as a ServiceLifecycle service, for software that
/// fetches CRLs, asks OCSP or scrapes metrics over HTTP. Each request is
/// answered by an async handler; bodies over 64 KiB are refused.
public final class HTTPEndpoint: Service, Sendable {
    let host: String
    let port: Int
    let handler: @Sendable (HTTPRequest) async -> HTTPResponse
    let onListening: @Sendable (Int) -> Void

    public static let maxBodyBytes = 64 * 1024

    public init(host: String, port: Int, onListening: @escaping @Sendable (Int) -> Void = { _ in },
                handler: @escaping @Sendable (HTTPRequest) async -> HTTPResponse) {
        self.host = host
        self.port = port
        self.handler = handler
        self.onListening = onListening
    }

    public func run() async throws {
        let handler = self.handler
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(HTTPRequestHandler(handler: handler))
                }
            }
            .bind(host: host, port: port).get()
        onListening(channel.localAddress?.port ?? port)
        do {
            try await gracefulShutdown()
        } catch {}
        try? await channel.close()
    }
}

final class HTTPRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let handler: @Sendable (HTTPRequest) async -> HTTPResponse
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(handler: @escaping @Sendable (HTTPRequest) async -> HTTPResponse) {
        self.handler = handler
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
            tooLarge = false
        case .body(var buffer):
            if body.count + buffer.readableBytes > HTTPEndpoint.maxBodyBytes {
                tooLarge = true
            } else if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body += bytes
            }
        case .end:
            guard let head else { return }
            let request = HTTPRequest(method: head.method.rawValue, path: String(head.uri.split(separator: "?").first ?? ""),
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
