import Foundation

/// A client calling a server the way README.md tells it to: one new `curl` process per request,
/// every ~200 ms, each reading the agent's files afresh (so a rotation between two requests is
/// seen as a user would see it). Every outcome is kept, failures with curl's stderr.
final class RequestLoop: @unchecked Sendable {
    struct Outcome {
        let at: Date
        let succeeded: Bool
        /// curl's exit status and stderr for a failure.
        let detail: String
    }

    let name: String
    private let condition = NSCondition()
    private var recorded: [Outcome] = []
    private var stopping = false
    private var running = true

    /// - Parameter arguments: curl's arguments, e.g. `-sS --fail --cert client.pem --cacert bundle.pem URL`.
    init(name: String, curl arguments: [String], interval: TimeInterval = 0.2) {
        self.name = name
        Thread.detachNewThread { [self] in
            while !condition.withLock({ stopping }) {
                let started = Date()
                let outcome: Outcome
                do {
                    let result = try execute("/usr/bin/curl", arguments)
                    outcome = Outcome(at: started, succeeded: result.status == 0,
                                      detail: "curl exit \(result.status): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))")
                } catch {
                    outcome = Outcome(at: started, succeeded: false, detail: "\(error)")
                }
                condition.withLock {
                    recorded.append(outcome)
                    condition.broadcast()
                    _ = condition.wait(until: started.addingTimeInterval(interval))
                }
            }
            condition.withLock {
                running = false
                condition.broadcast()
            }
        }
    }

    var outcomes: [Outcome] { condition.withLock { recorded } }

    func failures(from start: Date = .distantPast, to end: Date = .distantFuture) -> [Outcome] {
        outcomes.filter { !$0.succeeded && $0.at >= start && $0.at < end }
    }

    func requests(from start: Date = .distantPast, to end: Date = .distantFuture) -> Int {
        outcomes.filter { $0.at >= start && $0.at < end }.count
    }

    /// Waits up to `timeout` for a request started at or after `start` that `matches`; the first such.
    func first(from start: Date, timeout: TimeInterval, where matches: (Outcome) -> Bool) -> Outcome? {
        let deadline = Date().addingTimeInterval(timeout)
        return condition.withLock {
            while true {
                if let found = recorded.first(where: { $0.at >= start && matches($0) }) { return found }
                guard running, condition.wait(until: deadline) else { return nil }
            }
        }
    }

    /// Ends the loop after the request in flight.
    func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
            while running { condition.wait() }
        }
    }

    /// The failures as lines for an assertion message.
    func describe(_ failures: [Outcome], since start: Date) -> String {
        failures.prefix(10).map { "  \(name) at +" + String(format: "%.1f s: ", $0.at.timeIntervalSince(start)) + $0.detail }
            .joined(separator: "\n")
    }
}
