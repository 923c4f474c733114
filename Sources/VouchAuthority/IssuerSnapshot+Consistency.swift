import Foundation
import VouchCrypto

extension IssuerSnapshot {
    /// Refuses a set of issuer rows that its certificates contradict, before anything signs with
    /// it, trusts it or hands it to agents. Whoever can write the database is not trusted with
    /// the CA's trust: a root is trusted only as `anchorRoot` (the CA directory's root.pem) or
    /// when an endorsement signed by a trusted root vouches for its key, as agents require; every
    /// other certificate must be signed by the root its row names.
    ///
    /// With `signingAt`, the active root and intermediate must also be valid at that time (a
    /// server refuses to sign with an expired intermediate; the commands leave it out so an
    /// operator can still rotate away from one).
    ///
    /// Throws `failedPrecondition`: `the issuers in the database are inconsistent: issuer <serial>: <why>`.
    public func checkConsistency(anchorRoot: X509Certificate, signingAt now: Date? = nil) throws {
        var certificates: [Int64: X509Certificate] = [:]
        for record in issuers {
            guard let certificate = try? X509Certificate(der: record.der) else {
                throw Self.inconsistent(record, "its stored certificate does not parse")
            }
            // The serial names the key file (issuers/<serial>/key.pem) and the CRL route: it must
            // be the certificate's own, which is hex and cannot climb out of the CA directory.
            guard record.serial == certificate.serialHex else {
                throw Self.inconsistent(record, "its row's serial is not its certificate's (\(certificate.serialHex))")
            }
            certificates[record.id] = certificate
        }
        for record in issuers {
            try checkShape(record)
            // checkShape guarantees a stored parent (and subject), and every row's certificate parsed above.
            guard let certificate = certificates[record.id] else { throw Self.inconsistent(record, "its certificate is missing") }
            if record.kind == .root {
                guard certificate.isSigned(by: certificate) else { throw Self.inconsistent(record, "this root is not self-signed") }
                continue
            }
            guard let parent = record.parentID.flatMap(issuer(id:)), let parentCertificate = certificates[parent.id] else {
                throw Self.inconsistent(record, "its parent is not a stored root")
            }
            guard certificate.isSigned(by: parentCertificate) else {
                throw Self.inconsistent(record, "its certificate is not signed by root \(parent.serial)")
            }
            if let subjectID = record.subjectID {
                guard let subject = certificates[subjectID], let subjectRecord = issuer(id: subjectID) else {
                    throw Self.inconsistent(record, "it names a subject that is not stored")
                }
                guard CertificateDER.subjectPublicKeyInfo(certificate.der) == CertificateDER.subjectPublicKeyInfo(subject.der),
                      certificate.commonName == subject.commonName else {
                    throw Self.inconsistent(record, "it does not certify the name and key of issuer \(subjectRecord.serial)")
                }
            }
        }
        try checkRootsAreVouchedFor(anchorRoot: anchorRoot, certificates: certificates)
        if let now { try checkSigningIssuersAreValid(at: now) }
    }

    /// Kinds, states and references that fit together.
    private func checkShape(_ record: IssuerRecord) throws {
        let parent = record.parentID.flatMap(issuer(id:))
        let subject = record.subjectID.flatMap(issuer(id:))
        switch record.kind {
        case .root:
            guard record.parentID == nil, record.subjectID == nil else { throw Self.inconsistent(record, "a root names a parent or a subject") }
        case .intermediate:
            guard record.subjectID == nil else { throw Self.inconsistent(record, "an intermediate names a subject") }
        case .cross, .endorsement:
            let expected: IssuerKind = record.kind == .cross ? .intermediate : .root
            guard let subject, subject.kind == expected, subject.id != record.id else {
                throw Self.inconsistent(record, "a \(record.kind.rawValue) certificate must name the \(expected.rawValue) it certifies")
            }
        }
        if record.kind != .root {
            guard let parent, parent.kind == .root, parent.id != record.id else {
                throw Self.inconsistent(record, "its parent is not a stored root")
            }
        }
        // Only keys the CA may hold are referenced, each in its own place.
        switch record.keyRef {
        case IssuerRecord.offlineKeyRef: break
        case IssuerRecord.initialKeyRef, IssuerRecord.databaseKeyRef, IssuerKeys.fileKeyRef(serial: record.serial):
            guard record.kind == .intermediate else { throw Self.inconsistent(record, "a \(record.kind.rawValue) names a key the CA holds") }
        case let reference where TokenKeyReference.isReference(reference) && (try? TokenKeyReference(parsing: reference)) != nil:
            // A key in a PKCS#11 token: only intermediates sign online (a root's token key is named in ca.json or root_key.uri).
            guard record.kind == .intermediate else { throw Self.inconsistent(record, "a \(record.kind.rawValue) names a key the CA holds") }
        default:
            throw Self.inconsistent(record, "unknown key reference \(AuthorityError.quoted(record.keyRef))")
        }
        if record.keyRef == IssuerRecord.databaseKeyRef, record.keyPEM?.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") != true {
            throw Self.inconsistent(record, "its key in the database is missing or not encrypted")
        }
        // What is in use may not hang from what is gone or not yet trusted.
        if record.state == .active, let parent, parent.state != .active {
            if record.kind == .intermediate {
                throw Self.inconsistent(record, "an active intermediate under root \(parent.serial), which is \(parent.state.rawValue)")
            }
        }
        // Endorsements outlive their root: restarting agents prove the new root with them.
        if record.state != .retired, record.kind != .endorsement, let parent, parent.state == .retired {
            throw Self.inconsistent(record, "it is \(record.state.rawValue) under root \(parent.serial), which is retired")
        }
        if record.state != .retired, record.kind == .cross, let subject, subject.state == .retired {
            throw Self.inconsistent(record, "it is \(record.state.rawValue) for issuer \(subject.serial), which is retired")
        }
    }

    /// Every root that is not retired is the anchor, or endorsed (transitively) by a root that is.
    private func checkRootsAreVouchedFor(anchorRoot: X509Certificate, certificates: [Int64: X509Certificate]) throws {
        let roots = issuers.filter { $0.kind == .root }
        var trusted = Set(roots.filter { $0.der == anchorRoot.der }.map(\.id))
        var grew = true
        while grew {
            grew = false
            for endorsement in issuers where endorsement.kind == .endorsement && endorsement.state != .retired {
                // Signed by its parent, for its subject's key: checked above.
                guard let parentID = endorsement.parentID, trusted.contains(parentID),
                      let subjectID = endorsement.subjectID, !trusted.contains(subjectID) else { continue }
                trusted.insert(subjectID)
                grew = true
            }
        }
        for root in roots where root.state != .retired && !trusted.contains(root.id) {
            throw Self.inconsistent(root, "no root this CA trusts endorses it (the CA directory's root is \(anchorRoot.serialHex))")
        }
    }

    /// The active root and intermediate are valid at `now`.
    private func checkSigningIssuersAreValid(at now: Date) throws {
        for record in issuers where record.state == .active && (record.kind == .root || record.kind == .intermediate) {
            guard let certificate = try? X509Certificate(der: record.der) else { continue }
            guard certificate.notBefore <= now, now < certificate.notAfter else {
                throw Self.inconsistent(record, "the active \(record.kind.rawValue) is not valid now (\(certificate.notBefore.formatted(.iso8601))"
                                        + " to \(certificate.notAfter.formatted(.iso8601)))")
            }
        }
    }

    static func inconsistent(_ record: IssuerRecord, _ reason: String) -> AuthorityError {
        AuthorityError(.failedPrecondition, "the issuers in the database are inconsistent: issuer \(record.serial): \(reason)")
    }
}
