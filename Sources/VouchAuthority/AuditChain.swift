import Foundation
import VouchCrypto

/// The audit log is a hash chain: each row stores the hash of the row before
/// it and its own hash over that and its fields, so editing, deleting or
/// reordering rows is detected by `verify`.
public enum AuditChain {
    /// The `prev_hash` of the first row.
    public static let genesis = [UInt8](repeating: 0, count: 32)

    public static func hash(previous: [UInt8], entry: AuditEntry) -> [UInt8] {
        var input = previous
        var time = entry.time.timeIntervalSince1970.bitPattern.bigEndian
        withUnsafeBytes(of: &time) { input.append(contentsOf: $0) }
        for field in [entry.actor, entry.action, entry.subject, entry.peer, entry.detail] {
            let bytes = Array(field.utf8)
            var length = UInt32(bytes.count).bigEndian
            withUnsafeBytes(of: &length) { input.append(contentsOf: $0) }
            input.append(contentsOf: bytes)
        }
        return sha256(input)
    }

    /// A stored row with its chain fields.
    public struct Row: Sendable {
        public var id: Int64
        public var entry: AuditEntry
        public var previousHash: [UInt8]
        public var hash: [UInt8]

        public init(id: Int64, entry: AuditEntry, previousHash: [UInt8], hash: [UInt8]) {
            self.id = id
            self.entry = entry
            self.previousHash = previousHash
            self.hash = hash
        }
    }

    public enum Verdict: Equatable, Sendable {
        case intact(events: Int, head: [UInt8])
        /// The first row that does not fit the chain, and why.
        case broken(rowID: Int64, reason: String)
    }

    /// Checks rows in id order against each other and against the recorded head (the
    /// last row's id and hash, kept apart so deleting trailing rows is caught too).
    public static func verify(_ rows: [Row], head: (id: Int64, hash: [UInt8])?) -> Verdict {
        var previous = genesis
        for row in rows {
            guard row.previousHash == previous else {
                return .broken(rowID: row.id, reason: "its previous-hash does not match the row before it (a row was deleted or edited)")
            }
            guard hash(previous: previous, entry: row.entry) == row.hash else {
                return .broken(rowID: row.id, reason: "its content does not match its hash (the row was edited)")
            }
            previous = row.hash
        }
        let lastID = rows.last?.id ?? 0
        if let head, head.id != lastID || head.hash != previous {
            return .broken(rowID: head.id, reason: "the log ends at row \(lastID) but its head records row \(head.id) (rows were deleted)")
        }
        return .intact(events: rows.count, head: previous)
    }
}
