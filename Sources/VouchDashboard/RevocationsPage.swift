import VouchAPI
import VouchAuthority

/// `/revocations`: revoked certificates, newest revocation first (the API lists by issuance).
enum RevocationsPage {
    static let cap = 10_000

    static func load(_ reader: any AdminReader) async throws -> Page {
        var request = Vouch_V1_ListCertificatesRequest()
        request.status = .revoked
        let (certificates, capped) = try await reader.allCertificates(request, cap: cap)
        let sorted = certificates.sorted { ($0.revokedAt, $1.serial) > ($1.revokedAt, $0.serial) }
        let rows = sorted.map { info in
            el("tr", ["data-serial": info.serial],
               cell(DashboardTime.text(info.revokedAt), "mono"),
               el("td", ["class": "serial"], el("a", ["href": QueryString.link("/", [("q", info.serial)])], text(info.serial))),
               cell(info.spiffeID, "spiffe"),
               cell(RevocationReason(rawValue: Int(info.revocationReason))?.description ?? "code \(info.revocationReason)"),
               cell(DashboardTime.text(info.notAfter), "mono"))
        }
        var content = [
            el("p", ["class": "summary", "id": "revocations-summary"],
               text("\(sorted.count) revoked certificate\(sorted.count == 1 ? "" : "s")" + (capped ? " (the first \(cap) read)" : ""))),
            table("revocations", headers: ["Revoked at", "Serial", "SPIFFE ID", "Reason", "Not after"], rows: rows,
                  empty: "No certificate is revoked."),
        ]
        if capped { content.insert(el("p", ["class": "notice"], text("More than \(cap) revocations: only the first \(cap) read.")), at: 0) }
        return Page(title: "Revocations", content: content)
    }
}
