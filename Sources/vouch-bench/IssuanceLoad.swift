import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI
import VouchAuthority
import VouchCrypto

/// Which RPC the load generator drives.
enum LoadMode: String, CaseIterable, Sendable { case enroll, renew }

/// Multi-use enrollment tokens, created through the Admin API as they run out.
actor TokenSupply {
    private let admin: Vouch_V1_Admin.Client<HTTP2ClientTransport.Posix>
    private let spiffeID: String
    private var current = ""
    private var remaining = 0

    init(admin: Vouch_V1_Admin.Client<HTTP2ClientTransport.Posix>, spiffeID: String) {
        self.admin = admin
        self.spiffeID = spiffeID
    }

    func next() async throws -> String {
        if remaining == 0 {
            var request = Vouch_V1_CreateTokenRequest()
            request.spiffeID = spiffeID
            request.uses = 1000
            request.ttlSeconds = 3600
            current = try await admin.createToken(request, options: VouchClient.options()).token
            remaining = 1000
        }
        remaining -= 1
        return current
    }
}

/// A key made before the clock starts, with its CSR and PEM: the client's own key
/// generation and encoding are not measured.
struct PreparedKey: Sendable {
    let csr: [UInt8]
    let keyPEM: String

    init() throws {
        let key = try PrivateKey(generating: .p256)
        csr = try CertificateSigningRequest.create(key: key, subjectAltNames: SubjectAltNames()).der
        keyPEM = try key.pkcs8PEM()
    }
}

/// One load run: `concurrency` workers calling back to back; only calls finishing inside
/// the measured window count. Enroll workers each hold one persistent TLS connection.
/// Renew workers renew as agents do: each renewal on a new mTLS connection with the
/// worker's newest certificate, since only the newest certificate of a lineage may renew.
struct IssuanceLoad: Sendable {
    let server: HostPort
    let caDirectory: String
    let mode: LoadMode
    let concurrency: Int
    let warmup: Duration
    let duration: Duration
    let csrs: [PreparedKey]
    let scratch: URL

    struct Outcome {
        var latencies: [Double] = []
        var failures = 0
        var firstError: String?
    }

    func run(tokens: TokenSupply, window: @escaping @Sendable () async -> Void) async throws -> Outcome {
        let start = ContinuousClock.now
        let measureFrom = start + warmup
        let measureUntil = measureFrom + duration
        return try await withThrowingTaskGroup(of: Outcome.self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    try await runWorker(worker, tokens: tokens, from: measureFrom, until: measureUntil)
                }
            }
            group.addTask {
                // Samples the server's CPU exactly over the measured window.
                try await Task.sleep(until: measureFrom, clock: .continuous)
                await window()
                try await Task.sleep(until: measureUntil, clock: .continuous)
                await window()
                return Outcome()
            }
            var total = Outcome()
            for try await outcome in group {
                total.latencies += outcome.latencies
                total.failures += outcome.failures
                total.firstError = total.firstError ?? outcome.firstError
            }
            return total
        }
    }

    private func runWorker(_ worker: Int, tokens: TokenSupply, from: ContinuousClock.Instant,
                           until: ContinuousClock.Instant) async throws -> Outcome {
        let bundle = CAFiles(directory: caDirectory).bundle
        if mode == .renew {
            return try await runRenewingWorker(worker, identity: try await enrollIdentity(worker, tokens: tokens, bundle: bundle),
                                               from: from, until: until)
        }
        return try await VouchClient.with(server: server, credentials: VouchClient.Credentials(bundlePEMPath: bundle)) { client in
            let ca = Vouch_V1_CertificateAuthority.Client(wrapping: client)
            var outcome = Outcome()
            var index = worker
            while ContinuousClock.now < until {
                let csr = Data(csrs[index % csrs.count].csr)
                index += 1
                let began = ContinuousClock.now
                do {
                    var request = Vouch_V1_EnrollRequest()
                    request.token = try await tokens.next()
                    request.csr = csr
                    request.ttlSeconds = 3600
                    _ = try await ca.enroll(request, options: VouchClient.options())
                    let ended = ContinuousClock.now
                    if ended >= from && ended <= until {
                        outcome.latencies.append((ended - began).seconds)
                    }
                } catch {
                    outcome.failures += 1
                    outcome.firstError = outcome.firstError ?? "\(error)"
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            return outcome
        }
    }

    private func runRenewingWorker(_ worker: Int, identity first: VouchClient.Credentials, from: ContinuousClock.Instant,
                                   until: ContinuousClock.Instant) async throws -> Outcome {
        var identity = first
        var outcome = Outcome()
        var index = worker
        while ContinuousClock.now < until {
            let prepared = csrs[index % csrs.count]
            index += 1
            let began = ContinuousClock.now
            do {
                var request = Vouch_V1_RenewRequest()
                request.csr = Data(prepared.csr)
                request.ttlSeconds = 3600
                let response = try await VouchClient.with(server: server, credentials: identity) {
                    try await Vouch_V1_CertificateAuthority.Client(wrapping: $0).renew(request, options: VouchClient.options())
                }
                let ended = ContinuousClock.now
                if ended >= from && ended <= until {
                    outcome.latencies.append((ended - began).seconds)
                }
                identity = try write(response, keyPEM: prepared.keyPEM, worker: worker, bundle: identity.bundlePEMPath)
            } catch {
                outcome.failures += 1
                outcome.firstError = outcome.firstError ?? "\(error)"
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        return outcome
    }

    /// Enrolls the worker's own identity and writes it where an mTLS client can load it.
    private func enrollIdentity(_ worker: Int, tokens: TokenSupply, bundle: String) async throws -> VouchClient.Credentials {
        let key = try PrivateKey(generating: .p256)
        var request = Vouch_V1_EnrollRequest()
        request.token = try await tokens.next()
        request.csr = Data(try CertificateSigningRequest.create(key: key, subjectAltNames: SubjectAltNames()).der)
        request.ttlSeconds = 3600
        let response = try await VouchClient.with(server: server, credentials: VouchClient.Credentials(bundlePEMPath: bundle)) {
            try await Vouch_V1_CertificateAuthority.Client(wrapping: $0).enroll(request, options: VouchClient.options())
        }
        return try write(response, keyPEM: try key.pkcs8PEM(), worker: worker, bundle: bundle)
    }

    /// Writes the worker's newest certificate (with its chain) and key; returns them as credentials.
    private func write(_ response: Vouch_V1_CertificateResponse, keyPEM: String, worker: Int, bundle: String) throws
        -> VouchClient.Credentials {
        let chain = try ([response.certificate] + response.chain).map { try X509Certificate(der: Array($0)) }
        let certificatePath = scratch.appendingPathComponent("worker-\(worker).pem").path
        let keyPath = scratch.appendingPathComponent("worker-\(worker)-key.pem").path
        try pemBundle(chain).write(toFile: certificatePath, atomically: true, encoding: .utf8)
        try keyPEM.write(toFile: keyPath, atomically: true, encoding: .utf8)
        return VouchClient.Credentials(bundlePEMPath: bundle, certificatePEMPath: certificatePath, keyPEMPath: keyPath)
    }
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
