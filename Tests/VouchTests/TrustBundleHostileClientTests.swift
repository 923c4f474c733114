import Foundation
import GRPCCore
import VouchAPI
import VouchCrypto
import VouchSQLiteStore
import XCTest

/// ConfirmTrustBundle and WatchTrustBundle called as a hostile certificate holder would: a revoked
/// certificate neither confirms nor watches (its handshake is refused), and a confirmation that is not a SHA-256 digest of a
/// generation the CA had is refused without a row.
final class TrustBundleHostileClientTests: XCTestCase {
    static let web = "spiffe://example.org/svc/web"

    func testARevokedCertificateNeitherConfirmsNorWatchesAndMalformedConfirmationsStoreNothing() async throws {
        let ca = try CAFixture()
        let key = try PrivateKey(generating: .p256)
        let issued = try await ca.enroll(token: try ca.createToken(spiffeID: Self.web), key: key)
        let identity = try ca.writeIdentity(issued, key: key, name: "web")
        let generation = try await ca.ca(identity) { try await $0.getTrustBundle(Vouch_V1_TrustBundleRequest()) }.generation

        func confirmation(_ generation: Int64, digest: Data = Data(repeating: 7, count: 32)) -> Vouch_V1_TrustBundleConfirmation {
            var confirmation = Vouch_V1_TrustBundleConfirmation()
            confirmation.generation = generation
            confirmation.bundleSha256 = digest
            return confirmation
        }
        for (request, what) in [(confirmation(-1), "a negative generation"), (confirmation(.max), "the largest generation"),
                                (confirmation(generation, digest: Data()), "an empty digest"),
                                (confirmation(generation, digest: Data(repeating: 1, count: 33)), "a 33-byte digest")] {
            await assertRPCError(.invalidArgument, what) { try await ca.ca(identity) { try await $0.confirmTrustBundle(request) } }
        }
        // A digest of 1 MiB is not even read: the stream is reset.
        await assertRPCError(.unavailable, "a 1 MiB digest") {
            try await ca.ca(identity) { try await $0.confirmTrustBundle(confirmation(generation, digest: Data(repeating: 1, count: 1 << 20))) }
        }
        let stored = try await SQLiteAuthorityStore(path: ca.caDir + "/vouch.db").trustConfirmations()
        XCTAssertEqual(stored.filter { $0.serial == issued.serial }.count, 0, "a refused confirmation stores no row")

        _ = try await ca.revoke(issued.serial, reason: 1, as: ca.admin)
        // Refused at the handshake, before any RPC.
        await assertRPCError(.unavailable, "a revoked certificate confirming") {
            try await ca.ca(identity) { try await $0.confirmTrustBundle(confirmation(generation)) }
        }
        await assertRPCError(.unavailable, "a revoked certificate watching") {
            try await ca.ca(identity) { client in
                try await client.watchTrustBundle(Vouch_V1_WatchTrustBundleRequest()) { response in
                    for try await _ in response.messages {}
                }
            }
        }
        let after = try await SQLiteAuthorityStore(path: ca.caDir + "/vouch.db").trustConfirmations()
        XCTAssertEqual(after.filter { $0.serial == issued.serial }.count, 0, "a revoked certificate counts as no confirmed agent")
    }
}
