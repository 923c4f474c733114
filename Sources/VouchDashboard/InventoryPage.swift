import GRPCCore
import VouchAPI

/// `/?q=&status=`: issued certificates, newest first, searched by SPIFFE ID or serial.
enum InventoryPage {
    static let pageSize: Int32 = 100
    static let statuses: [(value: String, name: String, status: Vouch_V1_CertificateStatus)] = [
        ("", "any status", .unspecified), ("active", "active", .active), ("revoked", "revoked", .revoked), ("expired", "expired", .expired),
    ]

    static func load(_ reader: any AdminReader, query: QueryString) async throws -> Page {
        let search = String(Substring(query["q"] ?? "").trimmingSpaces)
        let status = statuses.first { $0.value == (query["status"] ?? "") } ?? statuses[0]
        var request = Vouch_V1_ListCertificatesRequest()
        // A glob as typed; plain words match anywhere in the SPIFFE ID.
        request.identity = search.isEmpty || search.contains("*") || search.contains("?") ? search : "*\(search)*"
        request.status = status.status
        request.pageSize = pageSize
        request.pageToken = query["page"] ?? ""
        let page = try await reader.listCertificates(request)
        var certificates = page.certificates
        if request.pageToken.isEmpty, let exact = try await bySerial(search, reader: reader),
           status.status == .unspecified || exact.status == status.status {
            certificates.removeAll { $0.serial == exact.serial }
            certificates.insert(exact, at: 0)
        }
        let rows = certificates.map { info in
            el("tr", ["data-serial": info.serial],
               el("td", ["class": "serial"], el("a", ["href": QueryString.link("/", [("q", info.serial)])], text(info.serial))),
               cell(info.spiffeID, "spiffe"),
               cell((info.dnsNames + info.ipAddresses).joined(separator: ", "), "dns"),
               cell(info.status.name, "status status-\(info.status.name)"),
               cell(DashboardTime.text(info.notAfter), "mono"),
               cell(DashboardTime.text(info.issuedAt), "mono"))
        }
        var content = [
            searchForm(search: search, status: status.value),
            el("p", ["class": "summary", "id": "inventory-summary"],
               text("\(certificates.count) certificate\(certificates.count == 1 ? "" : "s") shown"
                    + (page.nextPageToken.isEmpty ? "" : ", more on the next page"))),
            table("inventory", headers: ["Serial", "SPIFFE ID", "Names", "Status", "Not after", "Issued"], rows: rows,
                  empty: "No certificate matches."),
        ]
        if !page.nextPageToken.isEmpty {
            content.append(el("a", ["class": "next", "href": QueryString.link("/", [("q", search), ("status", status.value),
                                                                                    ("page", page.nextPageToken)])], "Next page"))
        }
        return Page(title: "Certificates", content: content)
    }

    /// The certificate with this serial, when the search is one (1-40 hex digits).
    static func bySerial(_ search: String, reader: any AdminReader) async throws -> Vouch_V1_CertificateInfo? {
        guard (1...40).contains(search.utf8.count), search.utf8.allSatisfy(QueryString.isHexDigit) else { return nil }
        do {
            return try await reader.certificate(serial: search.lowercased())
        } catch let error as RPCError where error.code == .notFound || error.code == .invalidArgument {
            return nil
        }
    }

    static func searchForm(search: String, status: String) -> HTML {
        el("form", ["class": "search", "method": "get", "action": PageLayout.relative("/")],
           el("input", ["type": "search", "name": "q", "value": search, "placeholder": "SPIFFE ID (glob) or serial",
                        "aria-label": "Search"]),
           el("select", ["name": "status", "aria-label": "Status"], statuses.map { option in
               option.value == status
                   ? el("option", ["value": option.value, "selected": "selected"], text(option.name))
                   : el("option", ["value": option.value], text(option.name))
           }),
           el("button", ["type": "submit"], "Search"))
    }
}

