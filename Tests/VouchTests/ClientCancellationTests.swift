import Foundation
import GRPCCore
import VouchAPI
import XCTest

/// A Vouch client call cancelled as its RPC queues for a connection (Ctrl-C during the agent's
/// first CRL fetch) must come back at once, not wait forever.
final class ClientCancellationTests: XCTestCase {
    /// grpc-swift-nio-transport queues an RPC on an idle channel without looking at cancellation
    /// again; a call cancelled before that must still end, well before its 30 s deadline (itself a
    /// cancellation, which could not end it either).
    func testCallCancelledAsItQueuesOnAnIdleChannelEndsWithCancellation() async throws {
        let fixture = try CAFixture()
        let returned = expectation(description: "the cancelled call returned")
        let call = Task {
            defer { returned.fulfill() }
            return try await VouchClient.with(server: fixture.address, credentials: fixture.anonymous) { client in
                let ca = Vouch_V1_CertificateAuthority.Client(wrapping: client)
                _ = try await ca.getCRL(Vouch_V1_CRLRequest(), options: VouchClient.options())
                // The server closing the connection leaves the channel idle (it reconnects on demand).
                XCTAssertEqual(fixture.server.stop(), 0)
                try await Task.sleep(for: .milliseconds(200))
                // Cancelled before the RPC starts: its own cancellation handler runs before it queues.
                withUnsafeCurrentTask { $0?.cancel() }
                return try await ca.getCRL(Vouch_V1_CRLRequest(), options: VouchClient.options())
            }
        }
        guard await XCTWaiter().fulfillment(of: [returned], timeout: 5) == .completed else {
            return XCTFail("the cancelled call still waits 5 s later")
        }
        guard case .failure(let error) = await call.result else { return XCTFail("a cancelled call succeeded") }
        XCTAssertTrue(error is CancellationError, "\(error)")
    }
}
