import GRPCCore
import Metrics

/// Counts every RPC by method and outcome and times it, through swift-metrics
/// (Prometheus when the server runs with --http). Outermost interceptor, so
/// refusals by the authentication and authorization interceptors count too; it sits
/// outside `ErrorReportingInterceptor`, so it counts the status the client saw.
public struct MetricsInterceptor: ServerInterceptor {
    public init() {}

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>, context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let method = context.descriptor.method
        let started = ContinuousClock.now
        do {
            let response = try await next(request, context)
            if case .failure(let error) = response.accepted {
                Self.record(method: method, outcome: Self.name(error.code), since: started)
            } else {
                Self.record(method: method, outcome: "ok", since: started)
            }
            return response
        } catch let error as RPCError {
            Self.record(method: method, outcome: Self.name(error.code), since: started)
            throw error
        } catch {
            Self.record(method: method, outcome: "unknown", since: started)
            throw error
        }
    }

    /// Creates the certificate counters at zero, so a scrape right after start-up already has
    /// the series (alerts and rate() misbehave on series that appear only with the first event).
    /// Call after the metrics backend is bootstrapped.
    public static func registerCertificateCounters() {
        for label in ["vouch_ca_certificates_issued_total", "vouch_ca_certificates_renewed_total",
                      "vouch_ca_certificates_revoked_total"] {
            _ = Counter(label: label)
        }
    }

    static func record(method: String, outcome: String, since started: ContinuousClock.Instant) {
        let duration = ContinuousClock.now - started
        Counter(label: "vouch_ca_requests_total", dimensions: [("method", method), ("code", outcome)]).increment()
        if outcome != "ok" {
            Counter(label: "vouch_ca_requests_refused_total", dimensions: [("method", method), ("code", outcome)]).increment()
        }
        Timer(label: "vouch_ca_request_duration_seconds", dimensions: [("method", method)])
            .recordNanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
        guard outcome == "ok" else { return }
        switch method {
        case "Enroll": Counter(label: "vouch_ca_certificates_issued_total").increment()
        case "Renew": Counter(label: "vouch_ca_certificates_renewed_total").increment()
        case "Revoke": Counter(label: "vouch_ca_certificates_revoked_total").increment()
        default: break
        }
    }

    /// gRPC status names as the proto spells them (camelCase), for label values.
    static func name(_ code: RPCError.Code) -> String { "\(code)" }
}
