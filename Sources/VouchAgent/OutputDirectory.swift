import Foundation
import VouchTLS

/// Checks, before a token is spent, that the agent can write its files: the directory
/// exists (created 0700 if missing) and takes a new file, and no file name the agent
/// writes is taken by a directory or anything but a regular file.
struct OutputDirectory {
    let files: IdentityFiles

    /// The configured names (`--file`) and the files the agent keeps for itself.
    var fileNames: [String] { files.names.fileNames + OutputFileNames.reservedNames.sorted() }

    func prepare() throws {
        let directory = files.directory
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw AgentError("--out \(directory) is not a directory") }
        } else {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                throw AgentError("cannot create --out \(directory): \(Self.reason(error))")
            }
        }
        for name in fileNames {
            var info = stat()
            let path = directory + "/" + name
            if lstat(path, &info) == 0, info.st_mode & S_IFMT != S_IFREG {
                throw AgentError("\(path) exists and is not a regular file")
            }
        }
        let probe = directory + "/.vouch-write-probe-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else {
            throw AgentError("cannot write in --out \(directory): \(String(cString: strerror(errno)))")
        }
        close(fd)
        unlink(probe)
    }

    private static func reason(_ error: any Error) -> String {
        if let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError,
           let code = POSIXErrorCode(rawValue: Int32(underlying.code)) {
            return String(cString: strerror(code.rawValue))
        }
        return (error as NSError).localizedDescription
    }
}
