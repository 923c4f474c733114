import Foundation
import Testing
import VouchAuthority

/// Root CRLs and revoked intermediates in the store contract (Issuers.swift), on every store:
/// recorded with the generation-checked change that carries them, a root CRL's number only grows.
extension AuthorityStoreContractTests {
    static func rootCRL(_ root: IssuerChange.Reference, number: Int64, der: [UInt8] = [0x30, 0x00]) -> IssuerChange.RootCRLUpdate {
        IssuerChange.RootCRLUpdate(root: root, der: der, number: number, nextUpdate: now.addingTimeInterval(365 * 86400))
    }

    @Test(arguments: StoreKind.allCases)
    func aRootCRLIsStoredWithItsChangeAndItsNumberOnlyGrows(kind: StoreKind) async throws {
        let store = try await kind.make()
        let (root, _) = try await Self.adopted(store)
        let generation = try await store.changeIssuers(IssuerChange(rootCRLs: [Self.rootCRL(.id(root.id), number: 1, der: [0x30, 0x01, 0x01])]),
                                                       expectedGeneration: 1, audit: [Self.entry(.issuerCRL, subject: "r1")])
        #expect(generation == 2)
        let stored = try #require(try await store.issuers().issuer(serial: "r1"))
        #expect(stored.crlDER == [0x30, 0x01, 0x01] && stored.crlNumber == 1 && stored.crlNextUpdate == Self.now.addingTimeInterval(365 * 86400))

        let refusal = await Self.issuerRefusal {
            _ = try await store.changeIssuers(IssuerChange(rootCRLs: [Self.rootCRL(.id(root.id), number: 1)]), expectedGeneration: 2,
                                              audit: [Self.entry(.issuerCRL, subject: "r1")])
        }
        #expect(refusal == IssuerChange.staleRootCRLNumber("r1", number: 1, stored: 1))
        #expect(try await store.issuerGeneration() == 2, "the refused change moved nothing")
        #expect(try await store.issuers().issuer(serial: "r1")?.crlDER == [0x30, 0x01, 0x01])

        // prepare: the old root's next CRL and the new root's first, in the change that inserts it.
        var preparation = Self.preparation(under: root.id)
        preparation.rootCRLs = [Self.rootCRL(.id(root.id), number: 2), Self.rootCRL(.inserted(0), number: 1, der: [0x30, 0x02, 0x02, 0x02])]
        _ = try await store.changeIssuers(preparation, expectedGeneration: 2, audit: [Self.entry(.issuerCreate)])
        let after = try await store.issuers()
        #expect(after.issuer(serial: "r1")?.crlNumber == 2)
        #expect(after.issuer(serial: "r2").map { ($0.crlNumber, $0.crlDER) } ?? (0, nil) == (1, [0x30, 0x02, 0x02, 0x02]))
        #expect(after.issuer(serial: "i2")?.crlDER == nil, "only roots carry a stored CRL")
    }

    @Test(arguments: StoreKind.allCases)
    func anIntermediateRevokedByItsRootIsMarkedAndRetired(kind: StoreKind) async throws {
        let store = try await kind.make()
        let (root, initial) = try await Self.adopted(store)
        _ = try await store.changeIssuers(Self.rotation(to: "i2", under: root.id, retiring: initial.id), expectedGeneration: 1,
                                          audit: [Self.entry(.issuerCreate)])
        let revokedAt = Self.now.addingTimeInterval(60)
        _ = try await store.changeIssuers(IssuerChange(updates: [.init(id: initial.id, state: .retired)],
                                                       rootCRLs: [Self.rootCRL(.id(root.id), number: 1)],
                                                       revocations: [.init(id: initial.id, reason: 1, at: revokedAt)]),
                                          expectedGeneration: 2, audit: [Self.entry(.issuerRevoke, subject: "i1")])
        let revoked = try #require(try await store.issuers().issuer(serial: "i1"))
        #expect((revoked.state, revoked.revokedAt, revoked.revocationReason, revoked.isRevoked) == (.retired, revokedAt, 1, true))
        #expect(try await store.issuers().issuer(serial: "i2")?.isRevoked == false)

        let refusal = await Self.issuerRefusal {
            _ = try await store.changeIssuers(IssuerChange(revocations: [.init(id: root.id, reason: 1, at: revokedAt)]), expectedGeneration: 3,
                                              audit: [Self.entry(.issuerRevoke)])
        }
        #expect(refusal?.kind == .notFound, "a root is not revoked by a CRL")
        #expect(try await store.issuerGeneration() == 3)
    }
}
