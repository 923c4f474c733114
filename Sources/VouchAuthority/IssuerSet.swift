import Foundation
import VouchCrypto

/// An intermediate this process can sign with: its stored record, its key, and the chain sent
/// with the certificates it signs.
public struct SigningIssuer: Sendable {
    public let record: IssuerRecord
    public let signer: CertificateSigner
    /// The intermediate, then its cross certificate while one is active (`[I2, X]` from a root's
    /// activation to the old root's retirement: see docs/operations.md).
    public let chainDER: [[UInt8]]

    public var serial: String { record.serial }
    public var certificate: X509Certificate { signer.certificate }
}

/// The CA's issuers at one generation, as this process can use them: immutable, replaced as a
/// whole when the store's generation moves (`CertificateAuthority.reloadIssuers()`).
public struct IssuerSet: Sendable {
    /// The store's issuer generation; -1 before the store was read (`isAdopted` false).
    public let generation: Int64
    /// Every stored issuer, retired ones too, oldest first.
    public let records: [IssuerRecord]
    /// The intermediate that signs new certificates here: the active one, or, when this process
    /// cannot load its key, the newest one it can (see `signingIssuerWarning`).
    public let active: SigningIssuer
    /// Intermediates that are not retired and whose keys loaded, `active` first: each signs its
    /// CRL and answers OCSP for its certificates.
    public let publishing: [SigningIssuer]
    /// Set when `active` is not the stored active intermediate: `cannot load the key of issuer
    /// <s>: <why>; signing with <s>`. The same for the whole generation, so a caller logging it
    /// on each change logs it once per generation.
    public let signingIssuerWarning: String?
    /// False while the set is the CA directory's pair, before the store adopted it.
    public let isAdopted: Bool
    /// Why a non-retired intermediate has no signer here, by serial.
    let unloadable: [String: String]
    private let certificates: [String: X509Certificate]
    /// The CRLs of the roots that are not retired, checked against their roots (RootCRL.swift).
    public let rootCRLs: [ServedRootCRL]
    /// `root CRL of <serial> dropped: <why>` for each stored root CRL that failed its check.
    public let rootCRLWarnings: [String]

    // MARK: Views

    /// Roots that are not retired (pending ones included: clients trust them before they sign).
    public var roots: [IssuerRecord] { live(.root) }
    /// Intermediates that are not retired.
    public var intermediates: [IssuerRecord] { live(.intermediate) }
    /// Cross certificates that are not retired.
    public var crossCertificates: [IssuerRecord] { live(.cross) }
    /// Endorsements that are not retired (they stay after the old root retires: restarting
    /// agents prove the new root with them).
    public var endorsements: [IssuerRecord] { live(.endorsement) }

    private func live(_ kind: IssuerKind) -> [IssuerRecord] {
        records.filter { $0.kind == kind && $0.state != .retired }
    }

    /// The served CRL of a root that is not retired, by its serial.
    public func rootCRL(serial: String) -> ServedRootCRL? { rootCRLs.first { $0.root == serial } }

    /// The trust roots handed out with every certificate and by GetTrustBundle.
    public var rootsDER: [[UInt8]] { roots.map(\.der) }
    /// The chain sent with new certificates.
    public var chainDER: [[UInt8]] { active.chainDER }
    /// Intermediates for path building (listener pools, the trust bundle): every intermediate
    /// that is not retired, then the active cross certificates.
    public var poolIntermediatesDER: [[UInt8]] {
        intermediates.map(\.der) + crossCertificates.filter { $0.state == .active }.map(\.der)
    }
    public var endorsementsDER: [[UInt8]] { endorsements.map(\.der) }

    /// The parsed certificate of a stored issuer.
    public func certificate(_ record: IssuerRecord) -> X509Certificate? { certificates[record.serial] }

    public func record(serial: String) -> IssuerRecord? { records.first { $0.serial == serial } }
    public func record(id: Int64) -> IssuerRecord? { records.first { $0.id == id } }

    /// The id of the intermediate that issued a certificate (nil in the store = the initial one).
    public func issuerID(of certificateIssuerID: Int64?) -> Int64? {
        certificateIssuerID ?? records.first { $0.kind == .intermediate }?.id
    }

    /// The serial of the intermediate that issued a certificate, for the API's `issuer` fields.
    public func issuerSerial(of certificateIssuerID: Int64?) -> String? {
        issuerID(of: certificateIssuerID).flatMap { record(id: $0)?.serial }
    }

    /// The signer of a non-retired intermediate (retiring ones sign their CRL and OCSP answers);
    /// nil when unknown, retired, or its key is not loaded here.
    public func signer(forIssuer id: Int64) -> CertificateSigner? {
        publishing.first { $0.record.id == id }?.signer
    }

    /// The publishing intermediate a serial names: an intermediate's, or a cross certificate's
    /// (which shares its subject and key). Throws `notFound` for an unknown serial,
    /// `failedPrecondition` for a retired issuer, `unavailable` when its key is not loaded here.
    public func publishingIssuer(serial: String) throws -> SigningIssuer {
        guard var record = record(serial: serial), record.kind == .intermediate || record.kind == .cross else {
            throw AuthorityError(.notFound, "no intermediate with serial \(serial)")
        }
        if record.kind == .cross, let subjectID = record.subjectID, let subject = self.record(id: subjectID) {
            guard record.state != .retired else { throw Self.retired(serial) }
            record = subject
        }
        guard record.state != .retired else { throw Self.retired(serial) }
        guard let issuer = publishing.first(where: { $0.record.id == record.id }) else {
            throw AuthorityError(.unavailable, unloadable[record.serial] ?? "issuer \(record.serial) has no key here")
        }
        return issuer
    }

    /// The roots the CA trusts among stored ones: `anchor` (the CA directory's root.pem), then,
    /// transitively, each self-signed root whose key an endorsement signed by a trusted root
    /// certifies (the proof a root rollover makes). Signatures only: an endorsement that expired
    /// still proves what it proved.
    public static func trustedRoots(anchor: X509Certificate, records: [IssuerRecord]) -> [X509Certificate] {
        var certificates: [String: X509Certificate] = [:]
        for record in records { certificates[record.serial] = try? X509Certificate(der: record.der) }
        return trustedRoots(anchor: anchor, records: records, certificates: certificates)
    }

    private static func trustedRoots(anchor: X509Certificate, records: [IssuerRecord],
                                     certificates: [String: X509Certificate]) -> [X509Certificate] {
        var trusted = [anchor]
        var grew = true
        while grew {
            grew = false
            for endorsement in records where endorsement.kind == .endorsement {
                guard let certificate = certificates[endorsement.serial], trusted.contains(where: { certificate.isSigned(by: $0) }),
                      let endorsedKey = try? certificate.publicKeyDER else { continue }
                for root in records where root.kind == .root {
                    guard let candidate = certificates[root.serial], !trusted.contains(where: { $0.der == candidate.der }),
                          (try? candidate.publicKeyDER) == endorsedKey, candidate.isSigned(by: candidate) else { continue }
                    trusted.append(candidate)
                    grew = true
                }
            }
        }
        return trusted
    }

    static func retired(_ serial: String) -> AuthorityError {
        AuthorityError(.failedPrecondition, "issuer \(serial) is retired: its certificates have all expired")
    }

    // MARK: Building

    /// The set of a snapshot: every intermediate that is not retired gets its key loaded
    /// (`IssuerKeys.load`). The rows are not taken at their word, since whoever can write the
    /// database holds no CA key: a snapshot that `IssuerSnapshot.checkConsistency` refuses (a
    /// root neither `anchor`, the CA directory's root.pem, nor endorsed by a trusted root; a
    /// certificate not signed by its row's root; an active issuer not valid at `now`…) is refused
    /// as a whole (`failedPrecondition`): a planted root would let its owner mint client
    /// certificates the listener accepts. Throws as well when no intermediate that may sign can
    /// be loaded.
    public static func load(_ snapshot: IssuerSnapshot, anchor: X509Certificate, now: Date? = nil, keys: KeyAccess,
                            initial: CertificateSigner? = nil) throws -> IssuerSet {
        try snapshot.checkConsistency(anchorRoot: anchor, signingAt: now)
        var certificates: [String: X509Certificate] = [:]
        for record in snapshot.issuers {
            guard let certificate = try? X509Certificate(der: record.der) else {
                throw AuthorityError(.internal, "issuer \(record.serial): its stored certificate does not parse")
            }
            certificates[record.serial] = certificate
        }
        var loaded: [Int64: CertificateSigner] = [:]
        var unloadable: [String: String] = [:]
        for record in snapshot.issuers where record.kind == .intermediate && record.state != .retired {
            do {
                guard let parentID = record.parentID, let parent = snapshot.issuer(id: parentID), parent.kind == .root,
                      let root = certificates[parent.serial], let certificate = certificates[record.serial],
                      certificate.isSigned(by: root), !certificate.isSigned(by: certificate)
                else {
                    throw AuthorityError(.failedPrecondition, "cannot load the key of issuer \(record.serial): it is not signed by its root")
                }
                loaded[record.id] = try IssuerKeys.load(record, keys: keys, initial: initial)
            } catch {
                unloadable[record.serial] = "\(error)"
            }
        }
        func chain(of record: IssuerRecord) -> [[UInt8]] {
            [record.der] + snapshot.issuers.filter { $0.kind == .cross && $0.subjectID == record.id && $0.state == .active }.map(\.der)
        }
        // Active first, then the newest.
        let candidates = snapshot.issuers
            .filter { $0.kind == .intermediate && $0.state != .retired && loaded[$0.id] != nil }
            .sorted { ($0.state == .active ? 1 : 0, $0.createdGeneration, $0.id) > ($1.state == .active ? 1 : 0, $1.createdGeneration, $1.id) }
        let publishing = candidates.compactMap { record in
            loaded[record.id].map { SigningIssuer(record: record, signer: $0, chainDER: chain(of: record)) }
        }
        guard let stored = snapshot.activeIntermediate else {
            throw AuthorityError(.failedPrecondition, "the database names no active intermediate")
        }
        // A pending intermediate never signs leaves: clients may not trust its root yet.
        guard let active = publishing.first(where: { $0.record.state != .pending }) else {
            throw AuthorityError(.failedPrecondition, unloadable[stored.serial] ?? "cannot load the key of issuer \(stored.serial)")
        }
        let warning = active.record.id == stored.id ? nil
            : "\(unloadable[stored.serial] ?? "cannot load the key of issuer \(stored.serial)"); signing with \(active.serial)"
        let (rootCRLs, dropped) = snapshot.servedRootCRLs()
        return IssuerSet(generation: snapshot.generation, records: snapshot.issuers, active: active, publishing: publishing,
                         signingIssuerWarning: warning, isAdopted: true, unloadable: unloadable, certificates: certificates,
                         rootCRLs: rootCRLs, rootCRLWarnings: dropped)
    }

    /// The CA directory's pair, before the store was read (ids -1 for the root, 0 for the
    /// intermediate): what it signs is recorded with no issuer, which means the initial one.
    public static func bootstrap(_ material: CAMaterial) -> IssuerSet {
        let (root, intermediate) = material.initialRecords()
        let active = SigningIssuer(record: intermediate, signer: material.signer, chainDER: [intermediate.der])
        return IssuerSet(generation: -1, records: [root, intermediate], active: active, publishing: [active],
                         signingIssuerWarning: nil, isAdopted: false, unloadable: [:],
                         certificates: [root.serial: material.root, intermediate.serial: material.intermediate],
                         rootCRLs: [], rootCRLWarnings: [])
    }
}
