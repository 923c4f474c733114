import Foundation
import VouchCrypto
import VouchTLS
import X509

/// A trust bundle as the CA sends it (`WatchTrustBundle`), DER, not yet believed.
struct TrustBundleUpdate: Sendable {
    var generation: Int64 = 0
    var roots: [[UInt8]] = []
    var intermediates: [[UInt8]] = []
    var endorsements: [[UInt8]] = []
    var activeIntermediate: [UInt8] = []
    /// DER CRLs signed by the roots (`root_crls`), kept for crl.pem (`RootCRLIntake`).
    var rootCRLs: [[UInt8]] = []

    /// Most certificates of each kind an update may carry (a rollover holds two roots, a few
    /// intermediates and cross certificates, one endorsement per rollover).
    static let maximumRoots = IssuedIdentityCheck.maximumRoots
    static let maximumIntermediates = 32
    static let maximumEndorsements = 16
}

/// The CA files the agent holds when an update arrives.
struct HeldTrust: Sendable, Equatable {
    /// --ca-bundle: these roots need no endorsement.
    var configuredRoots: [Certificate]
    /// bundle.pem, endorsements.pem, ca_intermediates.pem.
    var roots: [Certificate]
    var endorsements: [Certificate]
    var caIntermediates: [Certificate]
    /// The agent's own certificate and chain.pem.
    var leaf: Certificate
    var chain: [Certificate]
}

/// The files an accepted update leaves, and what changed.
struct AcceptedBundle: Sendable {
    var generation: Int64
    var roots: [Certificate]
    var endorsements: [Certificate]
    var caIntermediates: [Certificate]
    /// chain.pem: the issuers of the agent's own certificate that chain to `roots`, newest root first.
    var chain: [Certificate]
    var added: [Certificate]
    var removed: [Certificate]
    /// Roots the update drops that anchor the agent's own certificate: kept until it renews under another.
    var keptForOwnCertificate: [Certificate]
    /// Whether any file differs from what is held.
    var changed: Bool
    /// Whether a newer root CRL was saved with it (crl.pem changed).
    var rootCRLsChanged = false

    var bundlePEM: String { get throws { try Certificate.pemBundle(roots) } }

    /// The four files, written together by `AtomicFile.writeAll`.
    func fileSet(_ files: IdentityFiles) throws -> [(path: String, bytes: [UInt8], mode: mode_t)] {
        [(files.bundle, Array(try bundlePEM.utf8), 0o644),
         (files.endorsements, Array(try Certificate.pemBundle(endorsements).utf8), 0o644),
         (files.caIntermediates, Array(try Certificate.pemBundle(caIntermediates).utf8), 0o644),
         (files.chain, Array(try Certificate.pemBundle(chain).utf8), 0o644)]
    }
}

/// A trust bundle update with a root no trusted root vouched for; nothing of it is used.
struct TrustUpdateRefused: Error, CustomStringConvertible {
    let root: Certificate
    var description: String {
        "refused a trust bundle update: root \(root.commonName ?? "(no CN)") \(root.serialHex) is not vouched for by a root the agent trusts"
    }
}

extension AgentTrust {
    /// The trust files on disk, for `acceptTrustUpdate`.
    func heldTrust() throws -> HeldTrust {
        let identity = try files.load()
        return HeldTrust(configuredRoots: try configuredRoots(), roots: try heldRoots(),
                         endorsements: try Certificate.all(inPEM: identity.endorsementsPEM),
                         caIntermediates: try Certificate.all(inPEM: identity.caIntermediatesPEM),
                         leaf: identity.leaf, chain: try Certificate.all(inPEM: identity.chainPEM))
    }

    /// The rule for a trust bundle from the CA:
    /// - a root not held is added only when an endorsement in the update has its subject and key, is
    ///   a CA certificate valid now, and is signed by a root already in bundle.pem; the root itself is
    ///   self-signed and valid now. Anything else (a root merely offered, a chain through an
    ///   intermediate, a root endorsing itself) refuses the whole update (`TrustUpdateRefused`);
    /// - held roots the update leaves out are removed, except one anchoring the agent's own
    ///   certificate (kept until it renews under another root); an update with no root is refused;
    /// - intermediates need no proof; those that do not chain to the resulting roots are dropped;
    /// - chain.pem is recomputed from the held and offered issuers of the agent's own certificate.
    func acceptTrustUpdate(_ update: TrustBundleUpdate, held: HeldTrust, now: Date = Date()) async throws -> AcceptedBundle {
        let offered = try TrustUpdateParts(update)
        guard !offered.roots.isEmpty else { throw IdentityRejected("a trust bundle update with no root was ignored") }

        var added: [Certificate] = []
        for root in offered.roots where !held.roots.contains(root) && !added.contains(root) {
            guard held.configuredRoots.contains(root) || isEndorsed(root, by: offered.endorsements, held: held.roots, now: now) else {
                throw TrustUpdateRefused(root: root)
            }
            added.append(root)
        }
        var roots = held.roots.filter(offered.roots.contains) + added
        var kept: [Certificate] = []
        var chain = await Self.issuers(of: held.leaf, among: held.chain + offered.intermediates, roots: roots, now: now)
        if chain.isEmpty {
            // The update drops every root the agent's own certificate chains to: they stay until it renews.
            for root in held.roots where !roots.contains(root) {
                if await !Self.issuers(of: held.leaf, among: held.chain, roots: [root], now: now).isEmpty { kept.append(root) }
            }
            roots = held.roots.filter { offered.roots.contains($0) || kept.contains($0) } + added
            chain = await Self.issuers(of: held.leaf, among: held.chain + offered.intermediates, roots: roots, now: now)
        }
        if chain.isEmpty { chain = held.chain }
        let intermediates = await Self.chaining(offered.intermediates, to: roots, now: now)
        let endorsements = endorsementsToKeep(held: held, offered: offered.endorsements, roots: roots)
        let changed = roots != held.roots || endorsements != held.endorsements || intermediates != held.caIntermediates || chain != held.chain
        return AcceptedBundle(generation: update.generation, roots: roots, endorsements: endorsements, caIntermediates: intermediates,
                              chain: chain, added: added, removed: held.roots.filter { !roots.contains($0) },
                              keptForOwnCertificate: kept, changed: changed)
    }

    /// Whether an endorsement among `endorsements`, signed by a root in `held`, vouches for `root`.
    /// Only self-signed roots of bundle.pem sign endorsements (were an intermediate ever put in
    /// --ca-bundle, its key still could not add a root).
    private func isEndorsed(_ root: Certificate, by endorsements: [Certificate], held: [Certificate], now: Date) -> Bool {
        guard RootEndorsements.isSelfSignedAuthority(root), Self.isValid(root, now: now) else { return false }
        let signers = held.filter(RootEndorsements.isSelfSignedAuthority)
        return endorsements.contains { endorsement in
            RootEndorsements.names(endorsement, root) && Self.isValid(endorsement, now: now)
                && signers.contains { RootEndorsements.isSigned(endorsement, bySubject: $0.subject, key: $0.publicKey) }
        }
    }

    static func isValid(_ certificate: Certificate, now: Date) -> Bool {
        certificate.notValidBefore <= now.addingTimeInterval(IssuedIdentityCheck.clockSkew) && certificate.notValidAfter > now
    }

    /// The certificates among `candidates` that issued `leaf` (its issuer's name, and their key
    /// verifies it) and chain to `roots`, the one under the newest root first: `[I2, X]` while the
    /// old root is held, `[I2]` once it is gone.
    static func issuers(of leaf: Certificate, among candidates: [Certificate], roots: [Certificate], now: Date) async -> [Certificate] {
        var found: [(issuer: Certificate, root: Certificate)] = []
        for candidate in unique(candidates) where RootEndorsements.isSigned(leaf, bySubject: candidate.subject, key: candidate.publicKey) {
            if let root = await anchor(of: candidate, roots: roots, now: now) { found.append((candidate, root)) }
        }
        // Newest by notBefore; between roots of the same second, the one later in the bundle.
        func rank(_ root: Certificate) -> (Date, Int) { (root.notValidBefore, roots.firstIndex(of: root) ?? 0) }
        return found.sorted { rank($0.root) > rank($1.root) }.map(\.issuer)
    }

    /// The CA certificates among `candidates` that chain to `roots` (each on its own, or through the others).
    static func chaining(_ candidates: [Certificate], to roots: [Certificate], now: Date) async -> [Certificate] {
        var kept: [Certificate] = []
        let all = unique(candidates)
        for candidate in all where IssuedIdentityCheck.isAuthority(candidate) {
            if await anchor(of: candidate, roots: roots, among: all.filter { $0 != candidate }, now: now) != nil { kept.append(candidate) }
        }
        return kept
    }

    /// The root `certificate` chains to, by RFC 5280 path validation at `now`.
    private static func anchor(of certificate: Certificate, roots: [Certificate], among intermediates: [Certificate] = [],
                               now: Date) async -> Certificate? {
        guard !roots.isEmpty else { return nil }
        var verifier = Verifier(rootCertificates: CertificateStore(roots)) { RFC5280Policy(validationTime: now) }
        if case .validCertificate(let chain) = await verifier.validate(leaf: certificate, intermediates: CertificateStore(intermediates)) {
            return chain.last
        }
        return nil
    }

    /// Endorsements worth keeping: held and offered ones that link --ca-bundle (or a held root) by
    /// signatures to a root in `roots` not in --ca-bundle, so a restart can prove that root again.
    private func endorsementsToKeep(held: HeldTrust, offered: [Certificate], roots: [Certificate]) -> [Certificate] {
        let all = Self.unique(held.endorsements + offered)
        let trusted = RootEndorsements.trustedKeys(anchors: held.configuredRoots + held.roots, endorsements: all)
        let linked = all.filter { endorsement in
            trusted.contains { RootEndorsements.isSigned(endorsement, bySubject: $0.subject, key: $0.key) }
                && !held.configuredRoots.contains { $0.subject == endorsement.subject && $0.publicKey == endorsement.publicKey }
        }
        return Array(linked.sorted { $0.notValidBefore > $1.notValidBefore }.prefix(TrustBundleUpdate.maximumEndorsements))
    }

    static func unique(_ certificates: [Certificate]) -> [Certificate] {
        var seen = Set<Certificate>()
        return certificates.filter { seen.insert($0).inserted }
    }
}

/// An update's certificates, parsed after their sizes were checked.
private struct TrustUpdateParts {
    let roots: [Certificate]
    let intermediates: [Certificate]
    let endorsements: [Certificate]

    init(_ update: TrustBundleUpdate) throws {
        let limits = [("roots", update.roots.count, TrustBundleUpdate.maximumRoots),
                      ("intermediates", update.intermediates.count, TrustBundleUpdate.maximumIntermediates),
                      ("endorsements", update.endorsements.count, TrustBundleUpdate.maximumEndorsements),
                      ("root CRLs", update.rootCRLs.count, TrustBundleUpdate.maximumRoots)]
        for (what, count, limit) in limits where count > limit {
            throw IdentityRejected("a trust bundle update with \(count) \(what) (at most \(limit)) was ignored")
        }
        let intermediates = update.intermediates + (update.activeIntermediate.isEmpty ? [] : [update.activeIntermediate])
        for der in update.roots + intermediates + update.endorsements where der.count > IssuedIdentityCheck.maximumCertificateBytes {
            throw IdentityRejected("a trust bundle update with a certificate of \(der.count) bytes was ignored")
        }
        do {
            roots = try update.roots.map { try Certificate(derEncoded: $0) }
            self.intermediates = try intermediates.map { try Certificate(derEncoded: $0) }
            endorsements = try update.endorsements.map { try Certificate(derEncoded: $0) }
        } catch {
            throw IdentityRejected("a trust bundle update with an unparseable certificate was ignored")
        }
    }
}
