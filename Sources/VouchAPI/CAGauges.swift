import Foundation
import Metrics
import Synchronization
import VouchAuthority
import VouchCrypto

/// Gauges read at scrape time, so they are exact when Prometheus looks.
public enum CAGauges {
    /// - Parameter agentStaleAfter: an agent whose last report is older counts as silent (`--agent-stale-after`).
    public static func refresh(authority: CertificateAuthority, store: any AuthorityStore, token: PKCS11Token? = nil,
                               agentStaleAfter: TimeInterval = FleetJudge.defaultStaleAfter) async {
        if let token { recordToken(token) }
        // SQLite: the file and its WAL; PostgreSQL: pg_database_size. Left as it was when the database cannot answer.
        if let bytes = try? await store.databaseSize() {
            Gauge(label: "vouch_ca_database_bytes").record(bytes)
        }
        if let expiring = try? await authority.countExpiring(within: 3600) {
            Gauge(label: "vouch_ca_certificates_expiring_within_1h").record(expiring)
        }
        Gauge(label: "vouch_ca_revoked_certificates").record(authority.revocations.count)
        recordRootCRLs(authority.issuerSet.rootCRLs, now: Date())
        if let counts = try? await authority.agentStateCounts(staleAfter: agentStaleAfter) { recordAgents(counts) }
    }

    /// `vouch_ca_agents{state}`: agents by the first state that applies of revoked, expired,
    /// superseded, silent, old_bundle, renewal_failing, ok. Every state is emitted, 0 included, so
    /// an alert on `vouch_ca_agents{state!="ok"} > 0` sees each series.
    public static func recordAgents(_ counts: [AgentState: Int]) {
        for state in AgentState.allCases {
            Gauge(label: "vouch_ca_agents", dimensions: [("state", state.rawValue)]).record(counts[state] ?? 0)
        }
    }

    /// Roots whose CRL expiry was last reported, so a retired root's series goes away.
    private static let rootCRLRoots = Mutex<Set<String>>([])

    /// `vouch_ca_root_crl_expires_in_seconds{root}`: seconds until each served root CRL's
    /// nextUpdate. Alert well before 0: then nginx, HAProxy and PostgreSQL refuse every client.
    public static func recordRootCRLs(_ crls: [ServedRootCRL], now: Date) {
        let roots = Set(crls.map(\.root))
        let gone = rootCRLRoots.withLock { held in defer { held = roots }; return held.subtracting(roots) }
        for root in gone { Gauge(label: "vouch_ca_root_crl_expires_in_seconds", dimensions: [("root", root)]).destroy() }
        for crl in crls {
            Gauge(label: "vouch_ca_root_crl_expires_in_seconds", dimensions: [("root", crl.root)])
                .record(crl.nextUpdate.timeIntervalSince(now).rounded(.down))
        }
    }

    /// `vouch_ca_pkcs11_token_up{token}`: 1 while the PKCS#11 token holding the CA's keys signs, 0
    /// while it has failed (issuing, CRL and OCSP signing answer unavailable) or refused the PIN.
    public static func recordToken(_ token: PKCS11Token) {
        Gauge(label: "vouch_ca_pkcs11_token_up", dimensions: [("token", token.label)]).record(token.status == .ok ? 1 : 0)
    }

    /// The serial last reported as signing, so its series drops to 0 when another takes over.
    private static let signingSerial = Mutex<String?>(nil)

    /// `vouch_ca_signing_issuer_info{serial}`: 1 for the intermediate this replica signs with, 0
    /// for the one before. Check it on every replica before retiring an issuer.
    public static func recordSigningIssuer(serial: String) {
        let previous = signingSerial.withLock { held in defer { held = serial }; return held }
        if let previous, previous != serial {
            Gauge(label: "vouch_ca_signing_issuer_info", dimensions: [("serial", previous)]).record(0)
        }
        Gauge(label: "vouch_ca_signing_issuer_info", dimensions: [("serial", serial)]).record(1)
    }
}
