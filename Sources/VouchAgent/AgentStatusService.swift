import Foundation
import GRPCCore
import VouchAPI
import VouchTLS

/// `vouch.v1.Agent` on the agent's local mTLS listener.
struct AgentStatusService: Vouch_V1_Agent.SimpleServiceProtocol {
    let state: AgentState

    func getStatus(request: Vouch_V1_GetStatusRequest, context: ServerContext) async throws -> Vouch_V1_AgentStatus {
        let snapshot = state.current
        var status = Vouch_V1_AgentStatus()
        status.spiffeID = snapshot.spiffeID
        status.serial = snapshot.serial
        status.notBefore = snapshot.notBefore?.unixSeconds ?? 0
        status.notAfter = snapshot.notAfter?.unixSeconds ?? 0
        status.lastRotation = snapshot.lastRotation?.unixSeconds ?? 0
        status.lastError = snapshot.lastError
        status.lastErrorAt = snapshot.lastErrorAt?.unixSeconds ?? 0
        status.rotations = Int64(snapshot.rotations)
        status.failures = Int64(snapshot.failures)
        status.nextRenewal = snapshot.nextRenewal?.unixSeconds ?? 0
        status.callerSpiffeID = SPIFFEIdentityInterceptor.current ?? ""
        status.caAddress = snapshot.caAddress
        status.trustGeneration = snapshot.trustGeneration
        status.bundleSha256 = Data(snapshot.bundleSHA256)
        status.rootSerials = snapshot.rootSerials
        return status
    }
}
