import Foundation
import Synchronization
@testable import VouchAgent

/// An `AgentClock` moved by hand: sleepers wake only when `advance` passes their deadline, so a
/// test runs hours of agent schedule in milliseconds and sees exactly when the agent waits.
final class ManualAgentClock: AgentClock {
    private struct Sleeper {
        let deadline: Date
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: Date
        var sleepers: [Int: Sleeper] = [:]
        var cancelled: Set<Int> = []
        var nextID = 0
    }

    private let state: Mutex<State>

    init(_ start: Date = Date()) {
        // Whole seconds, as certificate times are.
        state = Mutex(State(now: Date(timeIntervalSince1970: start.timeIntervalSince1970.rounded(.down))))
    }

    var now: Date { state.withLock { $0.now } }

    /// When the tasks sleeping on this clock wake, earliest first.
    var deadlines: [Date] { state.withLock { $0.sleepers.values.map(\.deadline).sorted() } }

    func sleep(until deadline: Date) async throws {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let wake: Result<Void, any Error>? = state.withLock { state in
                    if state.cancelled.remove(id) != nil { return .failure(CancellationError()) }
                    if deadline <= state.now { return .success(()) }
                    state.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    return nil
                }
                if let wake { continuation.resume(with: wake) }
            }
        } onCancel: {
            let sleeper = state.withLock { state in
                guard let sleeper = state.sleepers.removeValue(forKey: id) else {
                    state.cancelled.insert(id)
                    return Sleeper?.none
                }
                return sleeper
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes every sleeper whose deadline has come.
    func advance(by seconds: TimeInterval) {
        advance(to: now.addingTimeInterval(seconds))
    }

    func advance(to date: Date) {
        let due = state.withLock { state in
            state.now = max(state.now, date)
            let due = state.sleepers.filter { $0.value.deadline <= state.now }
            for id in due.keys { state.sleepers.removeValue(forKey: id) }
            return Array(due.values)
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    /// Waits (in real time, briefly) until `count` tasks sleep on this clock: the agent has
    /// finished what the last move of time set off and is waiting for the next moment.
    func waitForSleepers(_ count: Int = 1, timeout: Duration = .seconds(10)) async throws {
        let start = ContinuousClock.now
        while state.withLock({ $0.sleepers.count }) < count {
            guard ContinuousClock.now - start < timeout else {
                throw ClockWaitTimedOut(description: "\(count) sleeper(s) expected, \(state.withLock { $0.sleepers.count }) waiting")
            }
            try await Task.sleep(for: .milliseconds(1))
        }
    }
}

struct ClockWaitTimedOut: Error, CustomStringConvertible {
    let description: String
}
