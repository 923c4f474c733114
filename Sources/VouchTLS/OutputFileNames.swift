import Foundation

/// Which files the agent writes in its directory, under which names: the four it reads back
/// (certificate, key, chain, bundle) and the ones derived from them for servers that want another
/// shape (nginx a full chain, HAProxy cert+chain+key in one file, Java PKCS#12). Names are plain
/// file names, so the whole set stays in one directory and is replaced by one atomic write.
public struct OutputFileNames: Sendable, Equatable {
    public enum Kind: String, CaseIterable, Sendable {
        case certificate, key, chain, fullchain, bundle, crl, combined, pkcs12, truststore

        /// The agent reads these back (renewal, restart): they cannot be turned off.
        public var isRequired: Bool { [.certificate, .key, .chain, .bundle].contains(self) }
        /// Off unless asked for.
        public var defaultName: String? {
            switch self {
            case .certificate: "svid.pem"
            case .key: "svid_key.pem"
            case .chain: "chain.pem"
            case .fullchain: "fullchain.pem"
            case .bundle: "bundle.pem"
            case .crl: "crl.pem"
            case .combined, .pkcs12, .truststore: nil
            }
        }
        /// Files holding the private key are readable by the agent's user only.
        public var mode: mode_t { [.key, .combined, .pkcs12].contains(self) ? 0o600 : 0o644 }
        /// A PKCS#12 file needs the password.
        public var needsPassword: Bool { self == .pkcs12 || self == .truststore }
    }

    /// Names the agent keeps for itself (CA rotation files, DER CRLs), which no kind may take.
    public static let reservedNames: Set<String> = ["endorsements.pem", "ca_intermediates.pem", "crl.der"]

    /// A name for `--file` that cannot be used, with the reason.
    public struct Refusal: Error, Equatable, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    private var names: [Kind: String]

    public static let defaults = OutputFileNames(names: Dictionary(uniqueKeysWithValues: Kind.allCases.compactMap { kind in
        kind.defaultName.map { (kind, $0) }
    }))

    private init(names: [Kind: String]) { self.names = names }

    /// The file name of `kind`, nil when it is not written.
    public subscript(kind: Kind) -> String? { names[kind] }

    /// The kinds written, in declaration order.
    public var enabledKinds: [Kind] { Kind.allCases.filter { names[$0] != nil } }

    /// Every file name of the set.
    public var fileNames: [String] { enabledKinds.compactMap { names[$0] } }

    /// Whether a PKCS#12 kind is on (the password file is then required).
    public var needsPassword: Bool { enabledKinds.contains { $0.needsPassword } }

    /// Sets `kind`'s name; nil or empty turns it off.
    public mutating func set(_ kind: Kind, to name: String?) throws(Refusal) {
        let name = name ?? ""
        if name.isEmpty {
            guard !kind.isRequired else {
                throw Refusal("--file \(kind.rawValue)= cannot turn off \(kind.rawValue): the agent reads its certificate, key, chain and bundle back")
            }
            names[kind] = nil
            return
        }
        try Self.checkPlain(name, kind: kind)
        names[kind] = name
    }

    /// Applies `--file KIND=NAME` arguments in order, then checks that no two kinds share a name.
    public func applying(_ assignments: [String]) throws(Refusal) -> OutputFileNames {
        var result = self
        for assignment in assignments {
            guard let equals = assignment.firstIndex(of: "=") else {
                throw Refusal("--file \(assignment): expected KIND=NAME, e.g. fullchain=fullchain.pem (an empty NAME turns the kind off)")
            }
            let kindText = String(assignment[..<equals]), name = String(assignment[assignment.index(after: equals)...])
            try result.set(try Self.kind(kindText), to: name)
        }
        try result.checkDistinct()
        return result
    }

    /// The kind called `text`, or the refusal listing the kinds.
    public static func kind(_ text: String) throws(Refusal) -> Kind {
        guard let kind = Kind(rawValue: text) else {
            throw Refusal("unknown --file kind \(text) (\(Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return kind
    }

    /// Two kinds on one name would overwrite each other in the same write.
    public func checkDistinct() throws(Refusal) {
        var seen: [String: Kind] = [:]
        for kind in enabledKinds {
            guard let name = names[kind] else { continue }
            if let other = seen[name] {
                throw Refusal("--file: \(other.rawValue) and \(kind.rawValue) both name \(name); give each kind its own file")
            }
            seen[name] = kind
        }
    }

    private static func checkPlain(_ name: String, kind: Kind) throws(Refusal) {
        let shown = "--file \(kind.rawValue)=\(name)"
        guard !name.contains("/") else {
            throw Refusal("\(shown): NAME must be a plain file name in --out (no '/'), so the set is written in one directory")
        }
        guard name != ".", name != "..", !name.contains("\0"), !name.hasPrefix("."), name.utf8.count <= 200 else {
            throw Refusal("\(shown): NAME must be a plain file name in --out, not starting with '.', at most 200 bytes")
        }
        guard !reservedNames.contains(name), !(name.hasPrefix("crl-") && name.hasSuffix(".der")) else {
            throw Refusal("\(shown): \(name) is a file the agent keeps for itself")
        }
    }
}
