import Foundation
import VouchFiles

/// Files an operator names on the command line (`--root-key`, `--passphrase-file`, an existing
/// admin.pem) or keeps in the CA directory, read as the database password file is: a regular file
/// within a size limit, refused in one line otherwise (a FIFO must not hang a command, `/dev/zero`
/// must not fill the memory).
enum OperatorFile {
    /// Keys, passphrases and certificates are a few KiB.
    static let limit = 64 * 1024

    /// The text of `path`; `what` names it in refusals ("passphrase file", "--root-key").
    static func text(_ path: String, what: String, limit: Int = limit) throws -> String {
        do {
            return try SmallFile.text(path, limit: limit)
        } catch .unreadable(let reason) {
            throw CLIError("cannot read \(what) \(path) (\(reason))")
        } catch {
            throw CLIError("\(what) \(path) \(error)")
        }
    }
}
