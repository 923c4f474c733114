import VouchAgent

/// `agent.ca` in the config file: one string (`ca1:8443,ca2:8443`) or a YAML list of addresses.
struct ConfigCAAddresses: Decodable, Sendable {
    let entries: [String]

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            entries = [text]
        } else {
            entries = try container.decode([String].self)
        }
    }
}

extension CAAddressList {
    /// The agent's CA replicas from `--ca` (repeatable, each may list several) or else the config
    /// file's `agent.ca`; a mistake is named with where it came from.
    static func resolved(flags: [String], file: ConfigCAAddresses?) throws -> CAAddressList? {
        let (entries, origin) = flags.isEmpty ? (file?.entries ?? [], "config key agent.ca") : (flags, "--ca")
        guard !entries.isEmpty else { return nil }
        do {
            return try CAAddressList(parsing: entries)
        } catch {
            throw CLIError("\(origin): \(error)")
        }
    }
}
