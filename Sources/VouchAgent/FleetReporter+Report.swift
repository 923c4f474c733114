import Foundation
import VouchAPI

extension FleetReporter {
    /// The CA keeps at most this much of `last_error`; more would only cost bandwidth.
    static let maxErrorBytes = 1024
    /// Longest DNS name, as the CA takes `host_name`.
    static let maxHostNameBytes = 253

    /// The report for `snapshot`: what the listener serves (svid.pem's until it reloaded once) and
    /// the bundle, rotations and errors as the agent's status API shows them.
    static func report(_ snapshot: AgentSnapshot, hostName: String) -> Vouch_V1_AgentReport {
        var report = Vouch_V1_AgentReport()
        let serving = !snapshot.servingSerial.isEmpty
        report.servingSerial = serving ? snapshot.servingSerial : snapshot.serial
        report.servingNotAfter = unixSeconds(serving ? snapshot.servingNotAfter : snapshot.notAfter)
        report.trustGeneration = snapshot.trustGeneration
        report.bundleSha256 = Data(snapshot.bundleSHA256)
        report.rootSerials = snapshot.rootSerials
        report.lastRotation = unixSeconds(snapshot.lastRotation)
        report.lastError = prefix(snapshot.lastError, bytes: maxErrorBytes)
        report.lastErrorAt = unixSeconds(snapshot.lastErrorAt)
        report.rotations = Int64(snapshot.rotations)
        report.failures = Int64(snapshot.failures)
        report.agentVersion = VouchVersion.current
        report.hostName = prefix(hostName, bytes: maxHostNameBytes)
        return report
    }

    /// The host name from gethostname(2): Foundation's `ProcessInfo.hostName` may ask DNS.
    static func localHostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func unixSeconds(_ date: Date?) -> Int64 {
        Int64(date?.timeIntervalSince1970 ?? 0)
    }

    /// At most `bytes` UTF-8 bytes of `text`, cut at a character boundary.
    static func prefix(_ text: String, bytes: Int) -> String {
        guard text.utf8.count > bytes else { return text }
        var cut = ""
        for character in text {
            guard cut.utf8.count + character.utf8.count <= bytes else { break }
            cut.append(character)
        }
        return cut
    }
}
