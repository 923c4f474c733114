import Metrics
import Prometheus

/// Prometheus as the swift-metrics backend, exposed through `HTTPEndpoint`.
public enum PrometheusBootstrap {
    /// Installs a registry as the process's metrics backend (once per process).
    public static func install() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }

    /// The text exposition of `registry`.
    public static func scrape(_ registry: PrometheusCollectorRegistry) -> HTTPResponse {
        var body: [UInt8] = []
        registry.emit(into: &body)
        return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: body)
    }
}
