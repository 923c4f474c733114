import Foundation
import GRPCCore
import Logging
import Synchronization
import VouchAPI
import VouchCrypto
import VouchTLS
import X509

/// The CRL files a new identity needs in crl.pem, fetched before it is written and written in the
/// same set: nginx (`ssl_crl`) refuses to start on an empty crl.pem and, like HAProxy and
/// PostgreSQL, refuses every client whose chain lacks a CRL, so the first crl.pem a server can
/// see next to a new svid.pem must already hold its issuer's CRL and each bundle root's.
struct IdentityCRLs: Sendable {
    /// CRL files (DER) to write with the identity; crl.pem is computed from them in the same set.
    var files: [(path: String, bytes: [UInt8], mode: mode_t)] = []
    /// The certificate (DER) that signed each file's CRL, by path.
    var signers: [String: [UInt8]] = [:]
    /// Once the set is written: the follower holds the CRLs it saved.
    var adopt: @Sendable () -> Void = {}

    /// `files` without those whose path already holds a CRL of the same signer that is as new:
    /// the follower may have saved a newer one (a push) while these were fetched or while the disk
    /// refused the set, and an older CRL must never replace it. Called inside
    /// `IdentityWriter.serialized`, so nothing writes CRLs meanwhile.
    func stillNewer() -> DerivedFiles.FileSet {
        files.filter { file in
            guard let signerDER = signers[file.path], let signer = try? X509Certificate(der: signerDER),
                  let data = FileManager.default.contents(atPath: file.path),
                  let onDisk = try? CertificateRevocationList(der: Array(data)), onDisk.isSigned(by: signer),
                  let held = onDisk.number, let offered = try? CertificateRevocationList(der: file.bytes).number else { return true }
            return offered > held
        }
    }
}

extension RevocationStatus {
    /// A status that fetches nothing (tests' fixed revocation lists).
    func crls(for identity: VerifiedIdentity, roots: [Certificate], enrolling: Bool) async -> IdentityCRLs { IdentityCRLs() }
}

extension RevocationFollower {
    /// How long a new identity waits for its CRLs before it is written without them.
    static let identityCRLWait: Duration = .seconds(5)

    /// Fetches the CRLs `identity` needs: its issuing intermediate's, unless held (a renewal under
    /// the same intermediate asks nothing), and when `enrolling` each root of `roots`. Each is
    /// checked as the follower checks them (signed by that issuer, numbered, fresh; the roots'
    /// by `RootCRLIntake`). What cannot be had within `identityCRLWait` is left to the CRL refresh,
    /// with a warning naming the issuer: the identity is never held back for a CRL.
    func crls(for identity: VerifiedIdentity, roots: [Certificate], enrolling: Bool) async -> IdentityCRLs {
        guard let issuer = identity.intermediates.first(where: { $0.subject == identity.leaf.issuer }) ?? identity.intermediates.first,
              let issuerDER = try? issuer.der, let keySlice = CertificateDER.subjectPublicKeyInfo(issuerDER) else { return IdentityCRLs() }
        let key = Array(keySlice)
        let needsIssuer = enrolling || heldNumber(key: key) == nil
        let wantedRoots = enrolling ? roots : []
        guard needsIssuer || !wantedRoots.isEmpty else { return IdentityCRLs() }

        let found = FoundCRLs()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                if needsIssuer { await self.fetchIssuerCRL(issuer, der: issuerDER, key: key, into: found) }
                for root in wantedRoots { await self.fetchRootCRL(root, into: found) }
            }
            group.addTask { try? await Task.sleep(for: Self.identityCRLWait) }
            await group.next()
            group.cancelAll()
        }
        let result = found.value.withLock { $0 }
        let intake = RootCRLIntake(files: files)
        let rootFiles = intake.newer(result.rootCRLs, roots: wantedRoots, now: clock.now)
        for reason in rootFiles.refused { logger.notice("\(reason)") }

        var missing: [String] = []
        if needsIssuer && result.issuer == nil && heldNumber(key: key) == nil {
            missing.append("intermediate \(issuer.serialHex)")
        }
        let rootPaths = Set(rootFiles.files.map(\.path))
        for root in wantedRoots where !rootPaths.contains(intake.path(for: root)) && !FileManager.default.fileExists(atPath: intake.path(for: root)) {
            missing.append("root \(root.serialHex)")
        }
        if !missing.isEmpty {
            logger.warning("\(Self.missingIdentityCRLs(missing))", metadata: ["serial": "\(identity.leaf.serialHex)", "errors": "\(result.errors.joined(separator: "; "))"])
        }

        var crls = IdentityCRLs(files: rootFiles.files.map { ($0.path, $0.der, 0o644) })
        for root in wantedRoots { crls.signers[intake.path(for: root)] = try? root.der }
        if let taken = result.issuer {
            let previous = taken.path == crlPath ? await previousActive(besides: key) : nil
            if let previous { crls.files.append((previous.path, previous.der, 0o644)) }
            crls.files.append((taken.path, taken.crl.der, 0o644))
            crls.signers[taken.path] = issuerDER
            let moved = previous.map { (path: $0.path, key: $0.key) }
            crls.adopt = { [self] in adopt(taken.crl, key: key, path: taken.path, previous: moved) }
        }
        return crls
    }

    static func missingIdentityCRLs(_ issuers: [String]) -> String {
        "writing the new certificate without the CRL of \(issuers.joined(separator: ", ")): servers that check CRLs for the whole chain "
            + "(nginx ssl_crl, HAProxy crl-file, PostgreSQL ssl_crl_file) refuse clients until the CRL refresh brings it"
    }

    /// What the fetches brought so far (the wait may end them halfway).
    private final class FoundCRLs: Sendable {
        struct Found {
            var issuer: (crl: CertificateRevocationList, path: String)?
            var rootCRLs: [[UInt8]] = []
            var errors: [String] = []
        }
        let value = Mutex(Found())
    }

    /// The issuer's CRL: the CA's active one (crl.der) when the issuer signed it, else the one
    /// GetCRL names by the issuer's serial (crl-<serial>.der). Kept only when newer than one held.
    private func fetchIssuerCRL(_ issuer: Certificate, der: [UInt8], key: [UInt8], into found: FoundCRLs) async {
        do {
            let signer = try X509Certificate(der: der)
            let active = try await replicas.call("GetCRL") { try await source.crl(from: $0, issuer: "") }
            var fetched = (try? checked(active, signer: signer)).map { ($0, crlPath) }
            if fetched == nil {
                let named = try await replicas.call("GetCRL") { try await source.crl(from: $0, issuer: issuer.serialHex) }
                fetched = (try checked(named, signer: signer), crlPath(issuer: issuer.serialHex))
            }
            guard let (crl, path) = fetched else { return }
            // One held from this issuer that is as new stays where it is.
            if let held = heldNumber(key: key), let number = crl.number, number <= held {
                found.value.withLock { $0.issuer = nil }
                return
            }
            found.value.withLock { $0.issuer = (crl, path) }
        } catch {
            found.value.withLock { $0.errors.append("intermediate \(issuer.serialHex): \(describe(error))") }
        }
    }

    private func fetchRootCRL(_ root: Certificate, into found: FoundCRLs) async {
        do {
            let der = try await replicas.call("GetCRL") { try await source.crl(from: $0, issuer: root.serialHex) }
            found.value.withLock { $0.rootCRLs.append(der) }
        } catch {
            found.value.withLock { $0.errors.append("root \(root.serialHex): \(describe(error))") }
        }
    }

    /// A CRL `signer` signed, with a number, fresh, and not dated ahead.
    private func checked(_ der: [UInt8], signer: X509Certificate) throws -> CertificateRevocationList {
        let crl = try CertificateRevocationList(der: der)
        guard crl.isSigned(by: signer) else { throw IdentityRejected("the CRL is not signed by intermediate \(signer.serialHex)") }
        _ = try crl.freshNumber(now: clock.now, issuer: "intermediate \(signer.serialHex)")
        return crl
    }
}
