import Foundation
import Testing
import VouchAuthority

/// `vouch ca root status` says which stage comes next and whether it is safe; `activate` and
/// `retire` refuse on the same verdict. One table, no store.
@Suite("Rollover status")
struct RolloverStatusTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    static func issuer(_ id: Int64, _ kind: IssuerKind, _ state: IssuerState, parent: Int64? = nil, generation: Int64) -> IssuerRecord {
        IssuerRecord(id: id, kind: kind, state: state, parentID: parent, serial: String(format: "%02x", id), der: [],
                     notBefore: t0, notAfter: t0.addingTimeInterval(86400 * 365), keyRef: "offline",
                     createdGeneration: generation, createdAt: t0)
    }

    /// R1 (1) + I1 (2); prepared: R2 (3), I2 (4) pending at generation 2; activated: R2, I2 active, R1, I1 retiring.
    static func snapshot(_ stage: RolloverStatus.Stage) -> IssuerSnapshot {
        let old: IssuerState = stage == .activated ? .retiring : .active
        let new: IssuerState = stage == .activated ? .active : .pending
        var issuers = [issuer(1, .root, old, generation: 1), issuer(2, .intermediate, old, parent: 1, generation: 1)]
        if stage != .none { issuers += [issuer(3, .root, new, generation: 2), issuer(4, .intermediate, new, parent: 3, generation: 2)] }
        return IssuerSnapshot(generation: stage == .activated ? 3 : Int64(issuers.count / 2), issuers: issuers)
    }

    static func counts(agents: Int = 12, unconfirmed: Int, oldRootCertificates: Int) -> RolloverCounts {
        let sample = (0..<min(unconfirmed, 2)).map {
            RolloverCertificate(serial: "ab0\($0)", spiffeID: "spiffe://example.org/svc/db\($0)", notAfter: t0.addingTimeInterval(600))
        }
        return RolloverCounts(rootCertificates: oldRootCertificates,
                              rootLatestNotAfter: oldRootCertificates > 0 ? t0.addingTimeInterval(3600) : nil,
                              liveAgents: agents, confirmedAgents: agents - unconfirmed, unconfirmedSample: sample)
    }

    struct Row: CustomTestStringConvertible, Sendable {
        let stage: RolloverStatus.Stage
        let unconfirmed: Int
        let oldRootCertificates: Int
        let command: String
        let safe: Bool
        let reason: String
        let safeAt: Date?
        var testDescription: String { "\(stage.rawValue), \(unconfirmed) unconfirmed, \(oldRootCertificates) old-root certificates" }
    }

    static let table: [Row] = [
        Row(stage: .none, unconfirmed: 0, oldRootCertificates: 0, command: "vouch ca root prepare", safe: true,
            reason: "no rollover in progress", safeAt: nil),
        Row(stage: .prepared, unconfirmed: 0, oldRootCertificates: 12, command: "vouch ca root activate", safe: true,
            reason: "every live agent holds the new root", safeAt: nil),
        Row(stage: .prepared, unconfirmed: 1, oldRootCertificates: 12, command: "vouch ca root activate", safe: false,
            reason: "1 live agent has not confirmed the new bundle (first: spiffe://example.org/svc/db0, serial ab00)", safeAt: nil),
        Row(stage: .prepared, unconfirmed: 2, oldRootCertificates: 12, command: "vouch ca root activate", safe: false,
            reason: "2 live agents have not confirmed the new bundle (first: spiffe://example.org/svc/db0, serial ab00)", safeAt: nil),
        Row(stage: .activated, unconfirmed: 0, oldRootCertificates: 0, command: "vouch ca root retire", safe: true,
            reason: "no live certificate depends on the old root", safeAt: nil),
        Row(stage: .activated, unconfirmed: 0, oldRootCertificates: 12, command: "vouch ca root retire", safe: false,
            reason: "12 live certificates still chain only to the old root (the last expires 2027-01-15T09:00:00Z)",
            safeAt: t0.addingTimeInterval(3600)),
        Row(stage: .activated, unconfirmed: 2, oldRootCertificates: 1, command: "vouch ca root retire", safe: false,
            reason: "1 live certificate still chains only to the old root (the last expires 2027-01-15T09:00:00Z); 2 agents have not confirmed",
            safeAt: nil),
        Row(stage: .activated, unconfirmed: 1, oldRootCertificates: 0, command: "vouch ca root retire", safe: false,
            reason: "1 agent has not confirmed", safeAt: nil),
    ]

    @Test("status says when each stage is safe", arguments: table)
    func statusSaysWhenEachStageIsSafe(_ row: Row) {
        let status = RolloverStatus.compute(Self.snapshot(row.stage),
                                            counts: Self.counts(unconfirmed: row.unconfirmed, oldRootCertificates: row.oldRootCertificates))
        #expect(status.stage == row.stage)
        #expect(status.next.command == row.command)
        #expect(status.next.safe == row.safe)
        #expect(status.next.reason == row.reason)
        #expect(status.next.safeAt == row.safeAt)
        #expect(status.oldRoot?.id == (row.stage == .none ? nil : 1))
        #expect(status.newRoot?.id == (row.stage == .none ? 1 : 3))
    }

    @Test("activate and retire refuse with the reason and what --force would cost")
    func refusals() {
        let prepared = RolloverStatus.compute(Self.snapshot(.prepared), counts: Self.counts(unconfirmed: 2, oldRootCertificates: 12))
        #expect(prepared.activateRefusal == "2 live agents have not confirmed the new bundle (first: spiffe://example.org/svc/db0, serial ab00); "
            + "--force activates anyway: OpenSSL-based peers without the new root will refuse new certificates")
        #expect(prepared.retireRefusal == nil, "retire is not the next stage")
        let activated = RolloverStatus.compute(Self.snapshot(.activated), counts: Self.counts(unconfirmed: 2, oldRootCertificates: 12))
        #expect(activated.retireRefusal == "12 live certificates still chain only to the old root (the last expires 2027-01-15T09:00:00Z); "
            + "2 agents have not confirmed; --force retires anyway: those certificates fail at every peer that drops the old root")
        let safe = RolloverStatus.compute(Self.snapshot(.activated), counts: Self.counts(unconfirmed: 0, oldRootCertificates: 0))
        #expect(safe.retireRefusal == nil)
    }
}
