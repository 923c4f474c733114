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
        case intact(events: Int, head: [UInt8], checkpoints: Int)
        /// The first row that does not fit the chain, and why.
        case broken(rowID: Int64, reason: String)
    }

    /// Checks rows in id order against each other and against the recorded head (the
    /// last row's id and hash, kept apart so deleting trailing rows is caught too; a
    /// missing head fails). Then every stored checkpoint and the `exported` one (a saved
    /// `vouch audit checkpoint`) must carry a valid signature of `intermediate` (or of the one of
    /// `intermediates` it names: after a rotation, checkpoints come from several) and name a
    /// row of this chain with the same hash: that catches a chain rewritten and rehashed
    /// by someone without the intermediate key, and a rollback to an older database.
    public static func verify(_ rows: [Row], head: (id: Int64, hash: [UInt8])?, checkpoints: [AuditCheckpoint] = [],
                              intermediate: X509Certificate? = nil, intermediates: [X509Certificate] = [],
                              exported: AuditCheckpoint? = nil) -> Verdict {
        let signers = (intermediate.map { [$0] } ?? []) + intermediates
        var previous = genesis
        var hashes: [Int64: [UInt8]] = [0: genesis]
        for row in rows {
            guard row.previousHash == previous else {
                return .broken(rowID: row.id, reason: "its previous-hash does not match the row before it (a row was deleted or edited)")
            }
            guard hash(previous: previous, entry: row.entry) == row.hash else {
                return .broken(rowID: row.id, reason: "its content does not match its hash (the row was edited)")
            }
            previous = row.hash
            hashes[row.id] = row.hash
        }
        let lastID = rows.last?.id ?? 0
        guard let head else {
            return .broken(rowID: lastID, reason: "the audit_head record is missing (it is never removed by Vouch: trailing rows may have been deleted)")
        }
        if head.id != lastID || head.hash != previous {
            return .broken(rowID: head.id, reason: "the log ends at row \(lastID) but its head records row \(head.id) (rows were deleted)")
        }
        let signed = checkpoints.map { ($0, "the checkpoint signed at \($0.time.formatted(.iso8601))") }
            + (exported.map { [($0, "the checkpoint file")] } ?? [])
        if !signed.isEmpty, signers.isEmpty {
            return .broken(rowID: lastID, reason: "checkpoints cannot be checked without the intermediate certificate")
        }
        for (checkpoint, what) in signed {
            let signer = signers.first { $0.serialHex == checkpoint.signer } ?? signers[0]
            if let problem = checkpoint.signatureProblem(certificate: signer) {
                return .broken(rowID: checkpoint.rowID, reason: "\(what) for this row is not valid: \(problem)")
            }
            if checkpoint.rowID > lastID {
                return .broken(rowID: checkpoint.rowID, reason: "\(what) records row \(checkpoint.rowID) but the log ends at row \(lastID) "
                               + "(rollback to an older database, or rows and head deleted)")
            }
            guard let stored = hashes[checkpoint.rowID] else {
                return .broken(rowID: checkpoint.rowID, reason: "\(what) names this row, which is not in the log")
            }
            if stored != checkpoint.hash {
                return .broken(rowID: checkpoint.rowID, reason: "its chain hash differs from \(what) (the log up to here was rewritten)")
            }
        }
        return .intact(events: rows.count, head: previous, checkpoints: signed.count)
    }

    /// Checks that `rows` (ascending ids, those after `checkpoint`) continue the chain from
    /// the checkpointed hash up to `head`: the server refuses to sign a head it cannot link
    /// to its last checkpoint. Nil when they do, else the first bad row and why.
    public static func verifyTail(_ rows: [Row], after checkpoint: (id: Int64, hash: [UInt8]), head: (id: Int64, hash: [UInt8]))
        -> (rowID: Int64, reason: String)? {
        var previous = checkpoint.hash
        var lastID = checkpoint.id
        for row in rows where row.id <= head.id {
            guard row.previousHash == previous, hash(previous: previous, entry: row.entry) == row.hash else {
                return (row.id, "it does not continue the chain from the last checkpoint (row \(checkpoint.id))")
            }
            previous = row.hash
            lastID = row.id
        }
        guard lastID == head.id, previous == head.hash else {
            return (head.id, "the head does not match the rows after the last checkpoint (row \(checkpoint.id))")
        }
        return nil
    }
}
