import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI

/// Where the agent's trust follower gets trust bundles from and tells which one it holds, one
/// replica at a time. `GRPCTrustBundleSource` asks a real CA; tests play replicas in-process.
protocol TrustBundleSource: Sendable {
    /// Follows the replica's WatchTrustBundle from `afterGeneration` until the stream ends or
    /// fails; `onOpen` when the replica accepted the stream, `onBundle` for each bundle.
    func watch(_ address: HostPort, afterGeneration: Int64, onOpen: @escaping @Sendable () -> Void,
               onBundle: @escaping @Sendable (TrustBundleUpdate) -> Void) async throws
    /// ConfirmTrustBundle: the agent (by its certificate) holds this generation, with this bundle.pem.
    func confirm(_ address: HostPort, generation: Int64, bundleSHA256: [UInt8]) async throws
}

struct GRPCTrustBundleSource: TrustBundleSource {
    /// --ca-bundle, used only until the agent holds bundle.pem (`CAServerIdentity.credentials`).
    let bundlePath: String
    let server: CAServerIdentity
    let rpcTimeout: Duration

    /// Largest bundle message read: 16 roots, 32 intermediates and 16 endorsements of at most 16 KiB.
    static let maxBundleBytes = 1 << 20

    private var mTLS: VouchClient.Credentials { server.credentials(bundlePath: bundlePath, clientCertificate: true) }

    func watch(_ address: HostPort, afterGeneration: Int64, onOpen: @escaping @Sendable () -> Void,
               onBundle: @escaping @Sendable (TrustBundleUpdate) -> Void) async throws {
        var message = Vouch_V1_WatchTrustBundleRequest()
        message.afterGeneration = afterGeneration
        var options = CallOptions.defaults
        options.limitResponses(to: Self.maxBundleBytes)
        let request = message, credentials = mTLS, callOptions = options
        let opened = StreamOpened()
        // As for the revocation stream: a replica that accepts TCP and says nothing counts as no
        // answer once a call's timeout has passed without the stream opening.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await VouchClient.with(server: address, credentials: credentials) { client in
                    try await Vouch_V1_CertificateAuthority.Client(wrapping: client).watchTrustBundle(request, options: callOptions) { response in
                        if case .success = response.accepted {
                            opened.set(at: Date())
                            onOpen()
                        }
                        for try await bundle in response.messages { onBundle(TrustBundleUpdate(bundle)) }
                    }
                }
            }
            group.addTask { [rpcTimeout] in
                try await Task.sleep(for: rpcTimeout)
                guard opened.at != nil else {
                    throw RPCError(code: .unavailable, message: "\(address) did not open the trust bundle stream within \(rpcTimeout)")
                }
                while true { try await Task.sleep(for: .seconds(3600)) }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    func confirm(_ address: HostPort, generation: Int64, bundleSHA256: [UInt8]) async throws {
        var confirmation = Vouch_V1_TrustBundleConfirmation()
        confirmation.generation = generation
        confirmation.bundleSha256 = Data(bundleSHA256)
        let message = confirmation
        _ = try await VouchClient.with(server: address, credentials: mTLS) { client in
            try await Vouch_V1_CertificateAuthority.Client(wrapping: client).confirmTrustBundle(message, options: VouchClient.options(timeout: rpcTimeout))
        }
    }
}

extension TrustBundleUpdate {
    init(_ bundle: Vouch_V1_TrustBundle) {
        self.init(generation: bundle.generation, roots: bundle.roots.map { Array($0) }, intermediates: bundle.intermediates.map { Array($0) },
                  endorsements: bundle.endorsements.map { Array($0) }, activeIntermediate: Array(bundle.activeIntermediate),
                  rootCRLs: bundle.rootCrls.map { Array($0) })
    }
}
