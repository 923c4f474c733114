import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import VouchAPI

/// Where the agent's fleet reports go, one replica at a time. `GRPCFleetReportSource` calls a
/// real CA; tests record the reports in-process.
protocol FleetReportSource: Sendable {
    /// ReportAgent: what the agent (by its certificate) serves and trusts now.
    func report(_ address: HostPort, _ report: Vouch_V1_AgentReport) async throws
}

struct GRPCFleetReportSource: FleetReportSource {
    /// --ca-bundle, used only until the agent holds bundle.pem (`CAServerIdentity.credentials`).
    let bundlePath: String
    let server: CAServerIdentity
    let rpcTimeout: Duration

    func report(_ address: HostPort, _ report: Vouch_V1_AgentReport) async throws {
        let credentials = server.credentials(bundlePath: bundlePath, clientCertificate: true)
        _ = try await VouchClient.with(server: address, credentials: credentials) { client in
            try await Vouch_V1_CertificateAuthority.Client(wrapping: client).reportAgent(report, options: VouchClient.options(timeout: rpcTimeout))
        }
    }
}
