import Foundation

/// CPU time and memory of another process, read from /proc (Linux).
struct ProcessSample {
    /// User + system CPU seconds used so far.
    let cpuSeconds: Double
    /// Resident set size in bytes.
    let residentBytes: Int

    init?(pid: Int32) {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let afterName = stat.range(of: ") ", options: .backwards) else { return nil }
        // Fields after "(comm) ": state is field 3, utime 14, stime 15.
        let fields = stat[afterName.upperBound...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        cpuSeconds = (user + system) / ticks
        let rssLine = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
        let kilobytes = rssLine.flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true)[1]) } ?? 0
        residentBytes = kilobytes * 1024
    }

    static func ofSelf() -> ProcessSample? { ProcessSample(pid: getpid()) }
}
