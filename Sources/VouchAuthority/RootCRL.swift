import Foundation
import VouchCrypto

/// A root's CRL. Servers that check CRLs for the whole chain (nginx `ssl_crl`, HAProxy
/// `crl-file`, PostgreSQL `ssl_crl_file`: OpenSSL's CRL_CHECK_ALL) refuse every client whose
/// chain lacks one for the root, so each root that is not retired has one. The root's key is
/// offline, so only the commands that already hold it sign it (`ca init`, `ca intermediate
/// rotate|revoke`, `ca root prepare|crl`), with a long nextUpdate; the servers serve the stored DER.
public enum RootCRL {
    /// The default nextUpdate: a short one on an offline key is an outage generator.
    public static let defaultLifetime: TimeInterval = 365 * 86400
    /// What `--next-update` accepts.
    public static let lifetimeRange: ClosedRange<TimeInterval> = 86400...(400 * 86400)
    /// Servers warn from this long before nextUpdate.
    public static let warningWindow: TimeInterval = 30 * 86400
    /// thisUpdate lies this far back, so a relying party whose clock is a little behind does not
    /// find it "not yet valid" (as certificates' notBefore).
    static let backdate: TimeInterval = 60

    /// What a root's CRL lists: every intermediate and cross certificate it signed that was revoked.
    public static func entries(rootID: Int64, issuers: [IssuerRecord]) -> [RevokedCertificateEntry] {
        issuers.filter { ($0.kind == .intermediate || $0.kind == .cross) && $0.parentID == rootID }.compactMap { record in
            guard let revokedAt = record.revokedAt, let serial = SerialNumber.bytes(fromHex: record.serial) else { return nil }
            return RevokedCertificateEntry(serial: serial, revokedAt: revokedAt, reason: record.revocationReason ?? 0)
        }
    }

    /// The DER CRL of `root` (its certificate) signed with `key`.
    public static func sign(root: X509Certificate, key: PrivateKey, entries: [RevokedCertificateEntry], number: Int64,
                            now: Date, lifetime: TimeInterval = defaultLifetime) throws -> [UInt8] {
        let signer = try CertificateSigner(certificate: root, key: key)
        return try signer.makeCRL(entries: entries, number: number, thisUpdate: now.addingTimeInterval(-backdate),
                                  nextUpdate: now.addingTimeInterval(lifetime))
    }

    /// The next CRL of a stored root (number one above its row's), as a change records it;
    /// `issuers` are the rows as they will be after the change (revocations included).
    public static func update(root: IssuerRecord, key: PrivateKey, issuers: [IssuerRecord], now: Date,
                              lifetime: TimeInterval = defaultLifetime) throws -> IssuerChange.RootCRLUpdate {
        let number = root.crlNumber + 1
        let der = try sign(root: try X509Certificate(der: root.der), key: key, entries: entries(rootID: root.id, issuers: issuers),
                           number: number, now: now, lifetime: lifetime)
        return IssuerChange.RootCRLUpdate(root: .id(root.id), der: der, number: number, nextUpdate: now.addingTimeInterval(lifetime))
    }

    /// Why a stored root's CRL cannot be served (nil: it can): it must parse, be signed by the
    /// row's certificate, name it as issuer and carry the row's number. Whoever can write the
    /// database holds no root key, so a CRL that fails was not signed by Vouch.
    public static func problem(with record: IssuerRecord) -> String? {
        guard let der = record.crlDER else { return nil }
        guard let root = try? X509Certificate(der: record.der) else { return "the root's certificate does not parse" }
        guard let crl = try? CertificateRevocationList(der: der) else { return "it is not a DER CRL" }
        guard crl.isSigned(by: root) else { return "it is not signed by the root's key" }
        guard crl.isIssued(by: root) else { return "its issuer name is not the root's" }
        guard crl.number == record.crlNumber else {
            return "its number \(crl.number.map(String.init) ?? "(none)") is not the stored \(record.crlNumber)"
        }
        return nil
    }
}

/// A root's CRL as a server serves it, checked against its root (`RootCRL.problem`).
public struct ServedRootCRL: Sendable, Equatable {
    /// The root's serial (lowercase hex).
    public let root: String
    public let der: [UInt8]
    public let number: Int64
    public let nextUpdate: Date

    public init(root: String, der: [UInt8], number: Int64, nextUpdate: Date) {
        self.root = root
        self.der = der
        self.number = number
        self.nextUpdate = nextUpdate
    }

    /// In PEM (`X509 CRL`), as nginx, HAProxy and PostgreSQL read CRL files.
    public var pem: String { PEM.encode(der, label: "X509 CRL") }
}

extension IssuerSnapshot {
    /// The CRLs of the roots that are not retired (pending ones too: clients trust them already),
    /// oldest root first, and one line per stored CRL that fails its check and is not served:
    /// `root CRL of <serial> dropped: <why>`.
    public func servedRootCRLs() -> (crls: [ServedRootCRL], dropped: [String]) {
        var crls: [ServedRootCRL] = []
        var dropped: [String] = []
        for root in issuers where root.kind == .root && root.state != .retired {
            guard let der = root.crlDER else { continue }
            if let problem = RootCRL.problem(with: root) {
                dropped.append("root CRL of \(root.serial) dropped: \(problem)")
                continue
            }
            let nextUpdate = (try? CertificateRevocationList(der: der))?.nextUpdate ?? root.crlNextUpdate ?? .distantPast
            crls.append(ServedRootCRL(root: root.serial, der: der, number: root.crlNumber, nextUpdate: nextUpdate))
        }
        return (crls, dropped)
    }

    /// Roots that are not retired and have no CRL yet (a CA made before root CRLs existed).
    public var rootsWithoutCRL: [IssuerRecord] {
        issuers.filter { $0.kind == .root && $0.state != .retired && $0.crlDER == nil }
    }
}
