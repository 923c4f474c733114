import Foundation
import VouchFiles

/// Reads a small configuration file (a password file, a root certificate file) with `SmallFile`:
/// a regular file of at most `limit` bytes, or an error naming `what`. A FIFO would block the
/// start for good and `/dev/zero` would fill the memory, so neither is read.
enum BoundedFile {
    static func read(_ path: String, limit: Int, what: String) throws -> Data {
        do {
            return try SmallFile.read(path, limit: limit)
        } catch .unreadable(let reason) {
            throw PostgresURLError("cannot read \(what) \(path): \(reason)")
        } catch {
            throw PostgresURLError("\(what) \(path) \(error)")
        }
    }
}
