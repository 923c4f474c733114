import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI

/// Where the agent's revocation follower gets its CRL and revocation events from, one replica
/// at a time. `GRPCRevocationSource` asks a real CA; tests play replicas in-process.
protocol RevocationSource: Sendable {
    /// The replica's current signed CRL of the active intermediate, raw (the follower verifies it).
    func crl(from address: HostPort) async throws -> [UInt8]
    /// The CRL of the intermediate with this serial (lowercase hex; empty: the active one).
    func crl(from address: HostPort, issuer: String) async throws -> [UInt8]
    /// Follows the replica's WatchRevocations from `afterSequence` until the stream ends or
    /// fails; `onOpen` when the replica has accepted the stream, `onEvent` for each event.
    func watch(_ address: HostPort, afterSequence: Int64, onOpen: @escaping @Sendable () -> Void,
               onEvent: @escaping @Sendable (Vouch_V1_RevocationEvent) -> Void) async throws
}

extension RevocationSource {
    /// A source that knows only the active CRL.
    func crl(from address: HostPort, issuer: String) async throws -> [UInt8] {
        guard issuer.isEmpty else { throw RPCError(code: .notFound, message: "no CRL of issuer \(issuer)") }
        return try await crl(from: address)
    }
}

struct GRPCRevocationSource: RevocationSource {
    /// --ca-bundle, used only until the agent holds bundle.pem (`CAServerIdentity.credentials`).
    let bundlePath: String
    let server: CAServerIdentity
    let rpcTimeout: Duration

    /// Largest GetCRL answer read, and largest single revocation event.
    static let maxCRLResponseBytes = 1 << 20
    static let maxEventBytes = 8 * 1024

    /// GetCRL needs no client certificate, so the agent learns of its own revocation too.
    private var anonymous: VouchClient.Credentials { server.credentials(bundlePath: bundlePath, clientCertificate: false) }

    private var mTLS: VouchClient.Credentials { server.credentials(bundlePath: bundlePath, clientCertificate: true) }

    private func options(maxResponseBytes: Int, timeout: Duration?) -> CallOptions {
        var options = timeout.map { VouchClient.options(timeout: $0) } ?? CallOptions.defaults
        options.limitResponses(to: maxResponseBytes)
        return options
    }

    func crl(from address: HostPort) async throws -> [UInt8] {
        try await crl(from: address, issuer: "")
    }

    func crl(from address: HostPort, issuer: String) async throws -> [UInt8] {
        var request = Vouch_V1_CRLRequest()
        request.issuer = issuer
        let message = request
        let response = try await VouchClient.with(server: address, credentials: anonymous) { client in
            try await Vouch_V1_CertificateAuthority.Client(wrapping: client)
                .getCRL(message, options: options(maxResponseBytes: Self.maxCRLResponseBytes, timeout: rpcTimeout))
        }
        return Array(response.crl)
    }

    func watch(_ address: HostPort, afterSequence: Int64, onOpen: @escaping @Sendable () -> Void,
               onEvent: @escaping @Sendable (Vouch_V1_RevocationEvent) -> Void) async throws {
        var message = Vouch_V1_WatchRevocationsRequest()
        message.afterSequence = afterSequence
        let request = message, credentials = mTLS, options = options(maxResponseBytes: Self.maxEventBytes, timeout: nil)
        let opened = StreamOpened()
        // The stream has no deadline, and the transport none for connecting: an address that
        // accepts TCP and then says nothing (a dead or fake replica) would hold it for good. Not
        // opened within the timeout of a call, it counts as no answer and the next replica is tried.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await VouchClient.with(server: address, credentials: credentials) { client in
                    try await Vouch_V1_CertificateAuthority.Client(wrapping: client).watchRevocations(request, options: options) { response in
                        if case .success = response.accepted {
                            opened.set(at: Date())
                            onOpen()
                        }
                        for try await event in response.messages { onEvent(event) }
                    }
                }
            }
            group.addTask { [rpcTimeout] in
                try await Task.sleep(for: rpcTimeout)
                guard opened.at != nil else {
                    throw RPCError(code: .unavailable, message: "\(address) did not open the revocation stream within \(rpcTimeout)")
                }
                // Opened: the stream alone decides when this call ends (this task is then cancelled).
                while true { try await Task.sleep(for: .seconds(3600)) }
            }
            try await group.next()
            group.cancelAll()
        }
    }
}
