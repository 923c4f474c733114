import Foundation
import Logging
import Testing
import VouchAPI
import VouchAuthority

/// `IssuerFollower` in process: it reloads the authority's issuers when the store's generation moves,
/// found by its poll, or at once when a shared store announces a change (no poll needed).
struct IssuerFollowerTests {
    /// Runs a follower, rotates the intermediate (then `afterRotation`), and returns the serial the
    /// authority signs with once it changed, or after 5 s.
    private func follow(_ world: IssuerWorld, interval: Duration, announcements: AsyncStream<Void>? = nil,
                        afterRotation: () -> Void = {}) async throws -> (rotated: String, signing: String) {
        let follower = IssuerFollower(authority: world.authority, store: world.store, announcements: announcements,
                                      logger: Logger(label: "test"), interval: interval)
        let running = Task { await follower.run() }
        defer { running.cancel() }
        let initial = world.authority.issuerSet.active.serial
        let rotated = try await world.rotate().certificate.serialHex
        afterRotation()
        let deadline = ContinuousClock.now + .seconds(5)
        while world.authority.issuerSet.active.serial == initial, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        return (rotated, world.authority.issuerSet.active.serial)
    }

    @Test func aRotationFoundByThePollIsLoaded() async throws {
        let world = try IssuerWorld()
        try await world.authority.start()
        let (rotated, signing) = try await follow(world, interval: .milliseconds(50))
        #expect(signing == rotated)
    }

    @Test func anAnnouncementLoadsTheChangeWithoutWaitingForThePoll() async throws {
        let world = try IssuerWorld()
        try await world.authority.start()
        let (announcements, announce) = AsyncStream.makeStream(of: Void.self)
        // A poll an hour away: only the announcement can bring the change within the 5 s allowed.
        let (rotated, signing) = try await follow(world, interval: .seconds(3600), announcements: announcements) { announce.yield() }
        #expect(signing == rotated)
    }
}
