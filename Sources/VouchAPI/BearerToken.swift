import GRPCCore

/// The enrollment token a client sent as `authorization: Bearer` metadata.
enum BearerToken {
    @TaskLocal static var current: String?

    static func from(_ metadata: Metadata) -> String? {
        for value in metadata[stringValues: "authorization"] {
            let parts = value.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1]) }
        }
        return nil
    }
}
