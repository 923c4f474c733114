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

    /// Warns on stderr when others than its owner may read or change the file at `path`, which
    /// holds a secret (a PIN, a passphrase, a keystore password) that was just accepted: it still
    /// works, but whoever else can read the file holds the secret too.
    static func warnIfShared(_ path: String, what: String) {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & (S_IRWXG | S_IRWXO) != 0 else { return }
        let mode = String(info.st_mode & 0o777, radix: 8)
        FileHandle.standardError.write(Data("""
            vouch: warning: \(what) \(path) can be read or changed by others than its owner (mode 0\(mode)); make it 0600

            """.utf8))
    }
}
