/// Why the authority refused a request. The API layer maps `kind` to a gRPC status.
public struct AuthorityError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// No credential, or a bad one (unknown, expired or used-up token).
        case unauthenticated
        /// The caller is known but not allowed to do this.
        case permissionDenied
        /// Bad input: CSR, proof of possession, SAN outside the grant, bad serial.
        case invalidArgument
        /// The credential's state forbids it: revoked or superseded certificate.
        case failedPrecondition
        case notFound
        /// Too many attempts from one peer.
        case resourceExhausted
        /// A fault on the authority's side.
        case `internal`
        /// The database cannot be reached now (down, restarting, unreachable); a retry later may work.
        case unavailable
    }

    /// Refusals a client acts on, named so it need not read the message (the API layer sends
    /// them on the wire).
    public enum Reason: Sendable, Equatable {
        /// The caller's certificate is revoked: only a new token helps.
        case certificateRevoked
        /// The caller's certificate has expired: only a new token helps.
        case certificateExpired
        /// The caller's certificate was renewed already: renew from the newest one.
        case certificateSuperseded
    }

    public let kind: Kind
    public let message: String
    public let reason: Reason?
    /// What lay behind the refusal, for the server's log only: never sent to a client, and not
    /// part of equality (e.g. PostgreSQL's reason the database is unavailable).
    public let cause: String?

    /// Messages travel back to clients in a gRPC trailer and into logs; a bound keeps
    /// attacker-sized input from overflowing either.
    public static let maximumMessageLength = 1024

    public init(_ kind: Kind, _ message: String, reason: Reason? = nil, cause: String? = nil) {
        self.kind = kind
        self.reason = reason
        self.cause = cause
        self.message = message.count > Self.maximumMessageLength
            ? String(message.prefix(Self.maximumMessageLength)) + "…" : message
    }

    public var description: String { message }

    public static func == (lhs: AuthorityError, rhs: AuthorityError) -> Bool {
        (lhs.kind, lhs.message, lhs.reason) == (rhs.kind, rhs.message, rhs.reason)
    }

    /// `text` as an error message may quote it: escaped, and cut to `limit` characters. Besides
    /// what `debugDescription` escapes, C1 controls and what reorders, hides or breaks a line when
    /// shown (bidi overrides, zero-width characters, U+2028) are written `\u{…}`: a refusal must
    /// not rewrite the log line or terminal that shows it.
    public static func quoted(_ text: String, limit: Int = 80) -> String {
        guard text.count > limit else { return visible(text.debugDescription) }
        return visible(String(text.prefix(limit)).debugDescription) + "… (\(text.utf8.count) bytes)"
    }

    static func visible(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: \.isHiddenOrControl) else { return text }
        return text.unicodeScalars.map { $0.isHiddenOrControl ? "\\u{\(String($0.value, radix: 16, uppercase: true))}" : String($0) }.joined()
    }
}

extension Unicode.Scalar {
    /// C0/C1 controls, and what reorders, hides or breaks lines when shown (bidi overrides,
    /// zero-width characters, U+2028/U+2029).
    var isHiddenOrControl: Bool {
        switch properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }
}
