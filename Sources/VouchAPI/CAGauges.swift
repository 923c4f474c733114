import Foundation
import Metrics
import VouchAuthority

/// Gauges read at scrape time, so they are exact when Prometheus looks.
public enum CAGauges {
    public static func refresh(authority: CertificateAuthority, store: any AuthorityStore) async {
        // SQLite: the file and its WAL; PostgreSQL: pg_database_size. Left as it was when the database cannot answer.
        if let bytes = try? await store.databaseSize() {
            Gauge(label: "vouch_ca_database_bytes").record(bytes)
        }
        if let expiring = try? await authority.countExpiring(within: 3600) {
            Gauge(label: "vouch_ca_certificates_expiring_within_1h").record(expiring)
        }
        Gauge(label: "vouch_ca_revoked_certificates").record(authority.revocations.count)
    }
}
