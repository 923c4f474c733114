/// Why TLS material could not be used: a file that cannot be read, an empty trust bundle,
/// or a private key that does not belong to its certificate.
public struct TLSMaterialError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String

    public init(_ description: String) { self.description = description }
}
