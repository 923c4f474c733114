import Foundation

/// What changed on disk, as hooks are told in `VOUCH_CHANGED` and as `--hook-on` selects:
/// `certificate` (a rotation or new enrollment: svid.pem and its key and chain), `crl` (a CRL file
/// the agent writes got new bytes: a revocation, or the CA's periodic re-signing) and `bundle`
/// (bundle.pem or chain.pem rewritten by a trust bundle update).
public struct FileChange: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let certificate = FileChange(rawValue: 1 << 0)
    public static let crl = FileChange(rawValue: 1 << 1)
    public static let bundle = FileChange(rawValue: 1 << 2)
    public static let all: FileChange = [.certificate, .crl, .bundle]

    /// Each kind with its name, sorted by name.
    static let named: [(name: String, change: FileChange)] = [("bundle", .bundle), ("certificate", .certificate), ("crl", .crl)]

    /// The sorted, comma separated names, e.g. `bundle,crl` (empty for no change).
    public var description: String {
        Self.named.filter { contains($0.change) }.map(\.name).joined(separator: ",")
    }

    /// Parses a comma separated list of kind names (`certificate,crl`); a failure names the unknown entry.
    public static func parse(_ list: String) -> Result<FileChange, UnknownKind> {
        var change: FileChange = []
        for part in list.split(separator: ",", omittingEmptySubsequences: false) {
            let name = part.trimmingCharacters(in: .whitespaces)
            guard let kind = named.first(where: { $0.name == name }) else { return .failure(UnknownKind(name: name)) }
            change.insert(kind.change)
        }
        return .success(change)
    }

    public struct UnknownKind: Error, CustomStringConvertible {
        public let name: String
        public var description: String {
            "unknown change \"\(name)\" (\(FileChange.named.map(\.name).joined(separator: ", ")))"
        }
    }
}
