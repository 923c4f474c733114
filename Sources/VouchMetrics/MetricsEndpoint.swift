import NIOCore
import NIOHTTP1
import NIOPosix
import Metrics
import Prometheus
import ServiceLifecycle

/// Serves `GET /metrics` in the Prometheus text format over plain HTTP/1.1,
/// as a ServiceLifecycle service.
public final class MetricsEndpoint: Service, Sendable {
    let host: String
    let port: Int
    let registry: PrometheusCollectorRegistry
    /// Refreshes gauges that depend on the time of the scrape.
    let beforeScrape: @Sendable () -> Void
    let onListening: @Sendable (Int) -> Void

    public init(host: String, port: Int, registry: PrometheusCollectorRegistry,
                beforeScrape: @escaping @Sendable () -> Void = {}, onListening: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.host = host
        self.port = port
        self.registry = registry
        self.beforeScrape = beforeScrape
        self.onListening = onListening
    }

    public func run() async throws {
        let registry = self.registry, beforeScrape = self.beforeScrape
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(MetricsRequestHandler(registry: registry, beforeScrape: beforeScrape))
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

/// Installs a Prometheus registry as the swift-metrics backend (once per process).
public enum PrometheusBootstrap {
    public static func install() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }
}

final class MetricsRequestHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let registry: PrometheusCollectorRegistry
    let beforeScrape: @Sendable () -> Void

    init(registry: PrometheusCollectorRegistry, beforeScrape: @escaping @Sendable () -> Void) {
        self.registry = registry
        self.beforeScrape = beforeScrape
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let request) = unwrapInboundIn(data) else { return }
        let status: HTTPResponseStatus
        var body: [UInt8]
        if request.method != .GET {
            status = .methodNotAllowed
            body = Array("only GET\n".utf8)
        } else if request.uri.split(separator: "?").first == "/metrics" {
            beforeScrape()
            status = .ok
            body = []
            registry.emit(into: &body)
        } else {
            status = .notFound
            body = Array("see /metrics\n".utf8)
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain")
        headers.add(name: "Content-Length", value: String(body.count))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [context] _ in context.close(promise: nil) }
    }
}
