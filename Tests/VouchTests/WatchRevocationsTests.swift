import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import XCTest

/// WatchRevocations: backlog from a sequence number, then live events.
final class WatchRevocationsTests: XCTestCase {
    /// A sequence beyond the CA's (one a fake CA handed the agent) would silence the stream for
    /// good; the CA replays its unexpired revocations instead.
    func testAWatcherAheadOfTheCAStartsOver() async throws {
        let ca = try CAFixture()
        let serial = try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/a"),
                                         key: try PrivateKey(generating: .p256)).serial
        _ = try await ca.revoke(serial, as: ca.admin)
        var request = Vouch_V1_WatchRevocationsRequest()
        request.afterSequence = .max
        let first = try await ca.ca(ca.admin) { client in
            try await client.watchRevocations(request) { response in
                for try await event in response.messages { return event.serial }
                return ""
            }
        }
        XCTAssertEqual(first, serial)
    }

    func testResumesAfterASequenceAndStreamsNewRevocations() async throws {
        let ca = try CAFixture()
        var serials: [String] = []
        for name in ["a", "b", "c"] {
            serials.append(try await ca.enroll(token: try ca.createToken(spiffeID: "spiffe://example.org/svc/\(name)"),
                                               key: try PrivateKey(generating: .p256)).serial)
        }
        let first = try await ca.revoke(serials[0], as: ca.admin)
        _ = try await ca.revoke(serials[1], reason: 3, as: ca.admin)

        var request = Vouch_V1_WatchRevocationsRequest()
        request.afterSequence = first.sequence
        let received = EventLog()
        await assertRPCError(.unauthenticated, "watching needs a client certificate") {
            try await ca.ca(ca.anonymous) { client in
                try await client.watchRevocations(request) { response in
                    for try await _ in response.messages {}
                }
            }
        }
        let resume = request
        try await ca.ca(ca.admin) { client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await client.watchRevocations(resume) { response in
                        for try await event in response.messages {
                            let count = received.append(event)
                            if count == 2 { return }
                        }
                    }
                }
                // Once the backlog has arrived, a new revocation is pushed on the open stream.
                while received.events.count < 1 { try await Task.sleep(for: .milliseconds(20)) }
                _ = try await ca.revoke(serials[2], reason: 1, as: ca.admin)
                try await group.waitForAll()
            }
        }
        let events = received.events
        XCTAssertEqual(events.map(\.serial), [serials[1], serials[2]], "only what came after the sequence, then the live one")
        XCTAssertEqual(events.map(\.reason), [3, 1])
        XCTAssertEqual(events[1].sequence, events[0].sequence + 1)
        XCTAssertEqual(events[0].spiffeID, "spiffe://example.org/svc/b")

        // A server with a watcher connected still shuts down promptly and cleanly.
        let watcher = Task {
            try await ca.ca(ca.admin) { client in
                try await client.watchRevocations(Vouch_V1_WatchRevocationsRequest()) { response in
                    for try await _ in response.messages {}
                }
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        let started = Date()
        XCTAssertEqual(ca.server.stop(), 0)
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        _ = await watcher.result
    }
}

final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [Vouch_V1_RevocationEvent] = []
    func append(_ event: Vouch_V1_RevocationEvent) -> Int { lock.withLock { stored.append(event); return stored.count } }
    var events: [Vouch_V1_RevocationEvent] { lock.withLock { stored } }
}
