import VouchAPI

/// The CA replicas an agent may talk to, in the order it tries them: at least one address,
/// each a real port, none twice. Parsed from `--ca HOST1:PORT,HOST2:PORT` and from the config
/// file's `ca:` (a comma string or a list).
public struct CAAddressList: Sendable, Equatable, CustomStringConvertible {
    public let addresses: [HostPort]

    /// The first address; the only one when the agent has no replicas.
    public var first: HostPort { addresses[0] }

    /// One address, as `--ca HOST:PORT` has always given.
    public init(_ address: HostPort) {
        addresses = [address]
    }

    /// Checks a list of addresses: not empty, ports 1-65535, no address twice.
    /// More replicas than any deployment runs; each dead one costs a call a deadline.
    public static let maximumCount = 32

    public init(_ addresses: [HostPort]) throws(CAAddressListError) {
        guard !addresses.isEmpty else { throw CAAddressListError("no CA address given") }
        // Every call may try each one with its own deadline: a list this long is a mistake.
        guard addresses.count <= Self.maximumCount else {
            throw CAAddressListError("\(addresses.count) CA addresses given; at most \(Self.maximumCount)")
        }
        var seen: Set<String> = []
        for address in addresses {
            guard (1...65535).contains(address.port) else {
                throw CAAddressListError("\(address) has no usable port (1-65535)")
            }
            // Host names are case-insensitive; a replica listed twice would be tried twice per call.
            guard seen.insert(address.description.lowercased()).inserted else {
                throw CAAddressListError("\(address) is listed twice")
            }
        }
        self.addresses = addresses
    }

    /// Parses entries such as `ca1:8443,ca2:8443` (blanks around commas allowed); each entry of
    /// `entries` may itself hold several comma-separated addresses.
    public init(parsing entries: [String]) throws(CAAddressListError) {
        var addresses: [HostPort] = []
        for entry in entries {
            for (index, part) in entry.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
                let text = part.trimmingWhitespace
                guard !text.isEmpty else {
                    throw CAAddressListError("\(entry.debugDescription): address \(index + 1) is empty")
                }
                guard let address = HostPort(text) else {
                    throw CAAddressListError("\(text.debugDescription) is not HOST:PORT (port 1-65535, IPv6 as [::1]:8443)")
                }
                addresses.append(address)
            }
        }
        try self.init(addresses)
    }

    public var description: String { addresses.map(\.description).joined(separator: ",") }
}

/// Why a list of CA addresses was refused, for the CLI's one-line error.
public struct CAAddressListError: Error, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

private extension Substring {
    var trimmingWhitespace: String {
        String(drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
}
