import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Synchronization
import VouchAPI
import VouchAuthority
import VouchCrypto
import VouchTLS

/// Keeps the set of revoked serials the agent's listener refuses: pushed by the
/// CA's WatchRevocations stream (within a second of a Revoke), with the signed
/// CRL fetched periodically as a fallback and kept on disk (`crl.der`) so a
/// restart while the CA is down still refuses revoked clients.
public final class RevocationFollower: Sendable {
    private struct State {
        var fromCRL: Set<String> = []
        var fromStream: Set<String> = []
        var lastSequence: Int64 = 0
    }

    private let state = Mutex(State())
    let files: IdentityFiles
    let address: HostPort
    let bundlePath: String
    let refreshInterval: Double
    let rpcTimeout: Double
    let logger: Logger
    /// Wakes the CRL loop early (after a streamed revocation).
    private let refreshNow: AsyncStream<Void>.Continuation
    private let refreshRequests: AsyncStream<Void>

    public var crlPath: String { files.directory + "/crl.der" }

    init(files: IdentityFiles, address: HostPort, bundlePath: String, refreshInterval: Double, rpcTimeout: Double, logger: Logger) {
        self.files = files
        self.address = address
        self.bundlePath = bundlePath
        self.refreshInterval = refreshInterval
        self.rpcTimeout = rpcTimeout
        self.logger = logger
        (refreshRequests, refreshNow) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    public func isRevoked(_ serial: String) -> Bool {
        state.withLock { $0.fromStream.contains(serial) || $0.fromCRL.contains(serial) }
    }

    /// Loads the CRL saved by an earlier run, if it verifies against the issuing CA on disk.
    func loadSavedCRL() {
        guard let data = FileManager.default.contents(atPath: crlPath) else { return }
        do {
            let serials = try verifiedSerials(Array(data))
            state.withLock { $0.fromCRL = serials }
            logger.info("loaded saved CRL", metadata: ["revoked": "\(serials.count)"])
        } catch {
            logger.warning("ignoring saved CRL", metadata: ["error": "\(error)"])
        }
    }

    private func verifiedSerials(_ der: [UInt8]) throws -> Set<String> {
        let crl = try CertificateRevocationList(der: der)
        let issuers = try X509Certificate.all(inPEM: String(contentsOfFile: files.chain, encoding: .utf8))
        guard issuers.contains(where: { crl.isSigned(by: $0) }) else {
            throw CryptoError(.badSignature, "CRL is not signed by the issuing CA in \(files.chain)")
        }
        return Set(crl.entries.map { SerialNumber.hex($0.serial) })
    }

    private var mTLS: VouchClient.Credentials {
        VouchClient.Credentials(bundlePEMPath: bundlePath, certificatePEMPath: files.certificate, keyPEMPath: files.key)
    }

    /// Fetches the CRL now and then every `refreshInterval`, or sooner when asked.
    func refreshCRLForever() async throws {
        while !Task.isCancelled {
            do {
                let response = try await VouchClient.with(server: address, credentials: mTLS) { client in
                    try await Vouch_V1_CertificateAuthority.Client(wrapping: client)
                        .getCRL(Vouch_V1_CRLRequest(), options: VouchClient.options(timeout: .milliseconds(Int64(rpcTimeout * 1000))))
                }
                let der = Array(response.crl)
                let serials = try verifiedSerials(der)
                try AtomicFile.write(der, to: crlPath)
                state.withLock { $0.fromCRL = serials }
                logger.debug("CRL refreshed", metadata: ["number": "\(response.crlNumber)", "revoked": "\(serials.count)"])
            } catch {
                logger.warning("CRL refresh failed; keeping the last one", metadata: ["error": "\(Agent.describe(error))"])
            }
            // Whichever comes first: the interval, or a streamed revocation asking for a fresh copy on disk.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await Task.sleep(for: .milliseconds(Int64(self.refreshInterval * 1000))) }
                group.addTask { for await _ in self.refreshRequests { return } }
                try await group.next()
                group.cancelAll()
            }
        }
    }

    /// Follows WatchRevocations, reconnecting with backoff and resuming after the last sequence seen.
    func watchForever(schedule: RenewalSchedule) async throws {
        var failures = 0
        while !Task.isCancelled {
            do {
                var request = Vouch_V1_WatchRevocationsRequest()
                request.afterSequence = state.withLock { $0.lastSequence }
                try await VouchClient.with(server: address, credentials: mTLS) { client in
                    try await Vouch_V1_CertificateAuthority.Client(wrapping: client).watchRevocations(request) { response in
                        for try await event in response.messages {
                            self.apply(event)
                        }
                    }
                }
                failures = 0
            } catch {
                failures += 1
                let delay = schedule.backoff(failures: failures)
                logger.notice("revocation stream down; CRL refresh covers meanwhile",
                              metadata: ["error": "\(Agent.describe(error))", "retry_in": "\(String(format: "%.1f", delay))s"])
                try await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
            }
        }
    }

    func apply(_ event: Vouch_V1_RevocationEvent) {
        state.withLock {
            $0.fromStream.insert(event.serial)
            $0.lastSequence = max($0.lastSequence, event.sequence)
        }
        logger.info("revocation received", metadata: ["serial": "\(event.serial)", "spiffe_id": "\(event.spiffeID)",
                                                      "sequence": "\(event.sequence)"])
        refreshNow.yield()
    }
}
