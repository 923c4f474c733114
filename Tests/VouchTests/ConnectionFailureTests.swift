import Foundation
@testable import PostgresNIO
import Testing
@testable import VouchAuthority
@testable import VouchPostgresStore

/// Which PostgreSQL failures a client sees as `unavailable` "database unavailable" (retry later,
/// or another replica), which as the store's own error (internal), and that the reason reaches
/// only the cause, for the server's log.
@Suite("Connection failures")
struct ConnectionFailureTests {
    static let location = "PostgreSQL database ca at db.internal:5432 as vouch"

    static func server(_ state: String, _ message: String) -> PSQLError {
        .server(.init(fields: [.sqlState: state, .message: message, .severity: "FATAL"]))
    }

    @Test(arguments: [("57P01", "terminating connection due to administrator command"), ("57P02", "crash shutdown"),
                      ("57P03", "the database system is starting up"), ("08006", "connection failure"),
                      ("53300", "sorry, too many clients already")])
    func aServerGoingAwayIsUnavailable(_ state: String, _ message: String) {
        let error = ConnectionFailure.classify(Self.server(state, message), leased: true, location: Self.location)
        let refusal = error as? AuthorityError
        #expect(refusal == AuthorityError(.unavailable, "database unavailable"))
        #expect(refusal?.cause == "\(Self.location): \(message) (SQLSTATE \(state))")
    }

    @Test func aLostConnectionIsUnavailable() {
        for lost in [PSQLError.serverClosedConnection(underlying: nil), .uncleanShutdown, PSQLError(code: .connectionError)] {
            let error = ConnectionFailure.classify(lost, leased: true, location: Self.location)
            #expect((error as? AuthorityError)?.kind == .unavailable, "\(lost.code)")
        }
        // Whatever fails before a connection is had is the pool's failing to reach the database.
        struct CircuitBreakerTripped: Error {}
        let unleased = ConnectionFailure.classify(CircuitBreakerTripped(), leased: false, location: Self.location)
        #expect((unleased as? AuthorityError)?.kind == .unavailable)
        #expect((unleased as? AuthorityError)?.cause?.hasPrefix(Self.location) == true)
    }

    /// A statement the database refused is the store's fault, not an outage: internal for the client.
    @Test func aRefusedStatementIsTheStoresError() {
        let error = ConnectionFailure.classify(Self.server("23505", "duplicate key value violates unique constraint"), leased: true,
                                               location: Self.location)
        #expect((error as? PostgresStoreError)?.sqlState == "23505")
        // An authority's refusal from inside a transaction passes as it is.
        let refusal = AuthorityError(.unauthenticated, "enrollment token t was already used")
        #expect(ConnectionFailure.classify(refusal, leased: true, location: Self.location) as? AuthorityError == refusal)
    }
}
