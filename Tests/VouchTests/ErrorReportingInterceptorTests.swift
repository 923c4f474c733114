import Foundation
import GRPCCore
import Logging
import Synchronization
import VouchAPI
import VouchAuthority
import XCTest

/// The one edge where what a handler throws becomes a gRPC status: what the client sees,
/// what the log and the audit trail keep.
final class ErrorReportingInterceptorTests: XCTestCase {
    struct DiskFull: Error {}

    func testAnUnexpectedErrorIsInternalToTheClientAndItsCauseIsLogged() async throws {
        let edge = try Edge()
        let status = await edge.call { throw DiskFull() }
        XCTAssertEqual(status?.code, .internalError)
        XCTAssertEqual(status?.message, "internal error")
        XCTAssertTrue(edge.log.lines.contains { $0.contains("request failed") && $0.contains("DiskFull") }, "\(edge.log.lines)")
    }

    func testAnAuthorityRefusalKeepsItsStatusAndIsAudited() async throws {
        let edge = try Edge()
        let status = await edge.call { throw AuthorityError(.permissionDenied, "not an admin") }
        XCTAssertEqual(status?.code, .permissionDenied)
        XCTAssertEqual(status?.message, "not an admin")
        let audit = try await edge.harness.authority.auditEvents(afterID: 0, limit: 10).map(\.entry)
        XCTAssertEqual(audit.map(\.action), ["refused"])
        XCTAssertEqual(audit.first?.detail, "permissionDenied: not an admin")
    }

    func testAnAnonymousFloodLeavesRoomForTheRefusalsOfCallersWithACertificate() async throws {
        let edge = try Edge()
        for _ in 0..<100 { _ = await edge.call { throw AuthorityError(.unauthenticated, "enrollment token is not valid") } }
        let workload = Caller(credential: .certificate(spiffeID: "spiffe://example.org/svc/web", serial: "0a"), peer: "ipv4:10.0.0.2:5000")
        let status = await RPCCaller.$current.withValue(workload) {
            await edge.call { throw AuthorityError(.permissionDenied, "not an admin") }
        }
        XCTAssertEqual(status?.code, .permissionDenied)
        let audit = try await edge.harness.authority.auditEvents(afterID: 0, limit: 500).map(\.entry)
        let anonymous = audit.filter { $0.detail.hasPrefix("unauthenticated") }.count
        XCTAssertTrue((60...62).contains(anonymous), "the anonymous flood is cut at its burst of 60: \(anonymous)")
        XCTAssertEqual(audit.filter { $0.detail == "permissionDenied: not an admin" }.count, 1, "the workload's refusal is still recorded")
    }

    func testAStreamThatFailsAfterItsFirstMessageIsMappedToo() async throws {
        let edge = try Edge()
        let status = await edge.call(streaming: true) { throw DiskFull() }
        XCTAssertEqual(status?.code, .internalError)
        XCTAssertEqual(status?.message, "internal error")
        XCTAssertTrue(edge.log.lines.contains { $0.contains("request failed") && $0.contains("DiskFull") }, "\(edge.log.lines)")
    }
}

/// An `ErrorReportingInterceptor` over an in-memory authority, with its log collected.
private struct Edge {
    let harness: AuthorityHarness
    let log = CollectedLog()
    let interceptor: ErrorReportingInterceptor

    init() throws {
        harness = try AuthorityHarness()
        interceptor = ErrorReportingInterceptor(authority: harness.authority, logger: log.logger)
    }

    /// Runs `handler` behind the interceptor as a unary call, or as the body of a server stream;
    /// returns the status the client would get (nil: OK).
    func call(streaming: Bool = false, _ handler: @escaping @Sendable () async throws -> Void) async -> RPCError? {
        await withServerContextRPCCancellationHandle { cancellation in
            let context = ServerContext(descriptor: MethodDescriptor(fullyQualifiedService: "vouch.v1.Admin", method: "ListTokens"),
                                        remotePeer: "ipv4:10.0.0.1:5000", localPeer: "ipv4:127.0.0.1:8443", cancellation: cancellation)
            do {
                let response: StreamingServerResponse<Int> = try await interceptor.intercept(
                    request: StreamingServerRequest(single: ServerRequest(metadata: [:], message: 0)), context: context
                ) { _, _ in
                    if !streaming { try await handler() }
                    return StreamingServerResponse(of: Int.self, metadata: [:]) { writer in
                        try await writer.write(1)
                        try await handler()
                        return [:]
                    }
                }
                _ = try await response.accepted.get().producer(RPCWriter(wrapping: DiscardingWriter()))
                return nil
            } catch {
                return error as? RPCError
            }
        }
    }
}

private struct DiscardingWriter: RPCWriterProtocol {
    func write(_ element: Int) async throws {}
    func write(contentsOf elements: some Sequence<Int>) async throws {}
}

/// Log lines (message and metadata) kept in memory.
final class CollectedLog: Sendable {
    private let stored = Mutex<[String]>([])

    var lines: [String] { stored.withLock { $0 } }

    var logger: Logger {
        Logger(label: "test") { _ in Handler(sink: self) }
    }

    private struct Handler: LogHandler {
        let sink: CollectedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            sink.stored.withLock { $0.append("\(event.level) \(event.message) \(fields)") }
        }
    }
}
