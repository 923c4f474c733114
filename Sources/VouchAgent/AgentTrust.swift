import Foundation
import VouchCrypto
import VouchTLS
import X509

/// What the agent believes, and against which trust: an enrollment answer against the
/// --ca-bundle, a renewal answer against the agent's own bundle.pem, files found at start
/// against both. A CA answer never adds roots: bundle.pem only ever holds roots from --ca-bundle
/// and roots they endorsed (`acceptTrustUpdate`).
struct AgentTrust: Sendable {
    let configuration: AgentConfiguration
    let files: IdentityFiles

    /// notBefore is backdated by the CA (at most 60 s) and clocks differ a little.
    static let lifetimeAllowance: TimeInterval = 120
    /// No certificate is believed for longer than this, whatever was asked.
    static let absoluteMaximumLifetime: TimeInterval = 366 * 24 * 3600

    /// The roots an operator handed the agent with --ca-bundle.
    func configuredRoots() throws -> [Certificate] {
        try roots(at: configuration.caBundlePath, what: "--ca-bundle")
    }

    /// The roots in the agent's bundle.pem.
    func heldRoots() throws -> [Certificate] {
        try roots(at: files.bundle, what: "bundle.pem")
    }

    private func roots(at path: String, what: String) throws -> [Certificate] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw IdentityRejected("cannot read \(what) \(path)")
        }
        let roots = try Certificate.all(inPEM: text)
        guard !roots.isEmpty else { throw IdentityRejected("\(what) \(path) holds no certificate") }
        return roots
    }

    /// The requested lifetime, capped; 0 (the CA's default) gets the absolute cap.
    private var requestedLifetime: TimeInterval {
        let ttl = configuration.certificateTTL.timeInterval
        return ttl > 0 ? min(ttl, Self.absoluteMaximumLifetime) : Self.absoluteMaximumLifetime
    }

    private func expectations(key: PrivateKey, spiffeID: String? = nil, dnsNames: Set<String>? = nil,
                              ipAddresses: Set<String>? = nil, now: Date) throws -> IdentityExpectations {
        IdentityExpectations(spiffeID: spiffeID, allowedDNSNames: dnsNames, allowedIPAddresses: ipAddresses,
                             publicKeyDER: try key.publicKeyDER, maximumLifetime: requestedLifetime + Self.lifetimeAllowance,
                             latestNotAfter: now.addingTimeInterval(requestedLifetime + Self.lifetimeAllowance))
    }

    /// An Enroll answer: chains to --ca-bundle, one SPIFFE ID, the new key, the asked lifetime.
    /// The agent's CSR asks for no names, so the token's DNS/IP SANs are accepted.
    func verifyEnrollment(_ answer: CAAnswer, key: PrivateKey,
                          now: Date = Date()) async throws -> (VerifiedIdentity, roots: [Certificate]) {
        let roots = try configuredRoots()
        let identity = try await IssuedIdentityCheck.verify(leafDER: answer.leaf, intermediatesDER: answer.chain, roots: roots,
                                                            expecting: try expectations(key: key, now: now), now: now)
        return (identity, roots)
    }

    /// A Renew answer: chains to bundle.pem, same SPIFFE ID and no new names, the new key, the asked lifetime.
    func verifyRenewal(_ answer: CAAnswer, key: PrivateKey, current: Certificate,
                       now: Date = Date()) async throws -> VerifiedIdentity {
        let names = current.subjectAltNames
        return try await IssuedIdentityCheck.verify(
            leafDER: answer.leaf, intermediatesDER: answer.chain, roots: try heldRoots(),
            expecting: try expectations(key: key, spiffeID: current.spiffeID, dnsNames: Set(names.dnsNames),
                                        ipAddresses: Set(names.ipAddresses), now: now), now: now)
    }

    /// Files found at start: bundle.pem holds only roots from --ca-bundle or roots that one of them
    /// endorsed (endorsements.pem, possibly through other endorsed roots), and the leaf (whose key
    /// `IdentityFiles.load` matched) chains to them through chain.pem and is a sane SPIFFE leaf.
    func verifyOnDisk(_ identity: LoadedIdentity, now: Date = Date()) async throws {
        let configured = try configuredRoots()
        let held = try heldRoots()
        let trusted = RootEndorsements.trustedKeys(anchors: configured, endorsements: try Certificate.all(inPEM: identity.endorsementsPEM))
        if let stranger = held.first(where: { !configured.contains($0) && !RootEndorsements.isProven($0, by: trusted) }) {
            throw IdentityRejected("bundle.pem holds a root (\(stranger.commonName ?? stranger.serialHex)) that is not in --ca-bundle "
                + "and that no root in it endorsed")
        }
        let key = try PrivateKey(pem: identity.keyPEM)
        let intermediates = try Certificate.all(inPEM: identity.chainPEM)
        _ = try await IssuedIdentityCheck.verify(
            leafDER: try identity.leaf.der, intermediatesDER: try intermediates.map { try $0.der }, roots: held,
            expecting: IdentityExpectations(publicKeyDER: try key.publicKeyDER,
                                            maximumLifetime: Self.absoluteMaximumLifetime + Self.lifetimeAllowance), now: now)
    }

    /// How many roots in an answer the agent does not already trust (they are ignored).
    func untrustedRootCount(_ answer: CAAnswer, trusted: [Certificate]) -> Int {
        let known = Set(trusted.compactMap { try? $0.der })
        return answer.roots.filter { !known.contains($0) }.count
    }
}
