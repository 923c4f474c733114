/// Who is calling the authority, whatever the transport: a verified client certificate or
/// nothing, and the peer's address. The API layer finds it for each call.
public struct Caller: Sendable, Equatable {
    public enum Credential: Sendable, Equatable {
        /// A client certificate that chained to this CA and is not revoked.
        case certificate(spiffeID: String, serial: String)
        case none
    }

    public var credential: Credential
    /// The peer's address, for the audit log.
    public var peer: String

    public init(credential: Credential, peer: String) {
        self.credential = credential
        self.peer = peer
    }

    public var spiffeID: String? {
        if case .certificate(let id, _) = credential { return id }
        return nil
    }

    public var serial: String? {
        if case .certificate(_, let serial) = credential { return serial }
        return nil
    }

    /// How the caller appears in audit entries.
    public var auditName: String { spiffeID ?? "anonymous" }

    /// The CLI acting on the CA host itself (e.g. `vouch ca init`).
    public static let local = Caller(credential: .none, peer: "local")
}
