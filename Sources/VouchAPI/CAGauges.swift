import Foundation
import Metrics
import VouchAuthority

/// Gauges read at scrape time, so they are exact when Prometheus looks.
public enum CAGauges {
    public static func refresh(authority: CertificateAuthority, databasePath: String) async {
        // The WAL holds committed transactions not yet checkpointed into the main file.
        let bytes = [databasePath, databasePath + "-wal"].reduce(0) { total, path in
            total + ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
        }
        Gauge(label: "vouch_ca_database_bytes").record(bytes)
        if let expiring = try? await authority.countExpiring(within: 3600) {
            Gauge(label: "vouch_ca_certificates_expiring_within_1h").record(expiring)
        }
        Gauge(label: "vouch_ca_revoked_certificates").record(authority.revocations.count)
    }
}
