import Foundation
@testable import VouchAPI
import XCTest

/// ConfirmTrustBundle writes to the database only when a confirmation says something new: an agent
/// alternating two digests must not turn every call into a write.
final class RecentConfirmationsTests: XCTestCase {
    func testAlternatingDigestsCostAtMostTwoWritesAMinute() async throws {
        let confirmations = RecentConfirmations()
        let a = RecentConfirmations.Entry(generation: 3, bundleSHA256: [UInt8](repeating: 1, count: 32))
        let b = RecentConfirmations.Entry(generation: 3, bundleSHA256: [UInt8](repeating: 2, count: 32))
        var writes = 0
        let start = Date()
        for call in 0..<300 {  // 300 calls within 10 seconds
            try await confirmations.confirm(call % 2 == 0 ? a : b, serial: "0a", now: start.addingTimeInterval(Double(call) / 30)) { writes += 1 }
        }
        XCTAssertEqual(writes, 2, "the first confirmation and the first change of digest")
        try await confirmations.confirm(a, serial: "0a", now: start.addingTimeInterval(70)) { writes += 1 }
        XCTAssertEqual(writes, 3, "a change is written again once the minute is over")
        // A higher generation is written at once, a repeat of it never.
        let next = RecentConfirmations.Entry(generation: 4, bundleSHA256: a.bundleSHA256)
        for _ in 0..<3 { try await confirmations.confirm(next, serial: "0a", now: start.addingTimeInterval(71)) { writes += 1 } }
        XCTAssertEqual(writes, 4)
        // A failed write is not remembered: the next confirmation tries again.
        struct Down: Error {}
        let c = RecentConfirmations.Entry(generation: 3, bundleSHA256: a.bundleSHA256)
        do { try await confirmations.confirm(c, serial: "0b", now: start) { throw Down() }; XCTFail("the write failed") } catch is Down {}
        try await confirmations.confirm(c, serial: "0b", now: start) { writes += 1 }
        XCTAssertEqual(writes, 5)
    }
}
