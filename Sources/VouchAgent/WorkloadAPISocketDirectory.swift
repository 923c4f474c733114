import Foundation

/// The directory the Workload API's socket is bound in. Whoever can write it can bind the socket's
/// path while the agent is down: workloads would then fetch a forged identity from them, and the
/// agent would refuse to start on a path another process serves. So, as sshd's StrictModes, the
/// directory must be owned by root or the agent's user and writable by neither group nor others.
enum WorkloadAPISocketDirectory {
    static let advice = "use a directory only the agent's user can write, e.g. /run/vouch"

    /// Checks the directory of `socketPath`, first creating it (mode 0755, the agent's) when it is
    /// missing and its parent exists; the created directory, or nil when it was there.
    static func prepare(_ socketPath: String, agentUID: uid_t = geteuid()) throws -> String? {
        let parent = (socketPath as NSString).deletingLastPathComponent
        let directory = parent.isEmpty ? "/" : parent
        let refuse = { (reason: String) in WorkloadAPIConfigurationError("cannot serve the Workload API on \(socketPath): \(reason)") }
        var created: String?
        var info = stat()
        if lstat(directory, &info) != 0, errno == ENOENT {
            // Only the last component: a missing parent is more likely a typo than a fresh emptyDir.
            if mkdir(directory, 0o700) == 0 {
                // mkdir's mode is cut by the umask (077 in the agent); 0755 lets the socket's own mode decide who connects.
                // Through a descriptor of the directory itself: a path swapped for a link meanwhile must not
                // give the link's target (a key of the agent's) that mode.
                let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
                defer { if descriptor >= 0 { close(descriptor) } }
                guard descriptor >= 0, fchmod(descriptor, 0o755) == 0 else {
                    throw refuse("cannot set the mode of \(directory): \(String(cString: strerror(errno)))")
                }
                created = directory
            } else if errno != EEXIST {
                throw refuse(errno == ENOENT ? "no directory \((directory as NSString).deletingLastPathComponent) to create \(directory) in"
                    : "cannot create \(directory): \(String(cString: strerror(errno)))")
            }
        }
        guard lstat(directory, &info) == 0 else {
            throw refuse("cannot inspect \(directory): \(String(cString: strerror(errno)))")
        }
        switch info.st_mode & S_IFMT {
        case S_IFDIR:
            break
        case S_IFLNK:
            let target = (directory as NSString).resolvingSymlinksInPath
            throw refuse("\(directory) is a symbolic link, and the agent checks the owner and mode of a real directory only; "
                + "name the directory it points to (\(target)) instead")
        default:
            throw refuse("\(directory) is not a directory")
        }
        if info.st_mode & S_IWOTH != 0 {
            throw refuse("\(directory) is writable by other users, who could serve workloads a forged identity there "
                + "while the agent is down; \(advice)")
        }
        if info.st_mode & S_IWGRP != 0 {
            throw refuse("\(directory) is writable by its group (gid \(info.st_gid)), whose members could serve workloads "
                + "a forged identity there while the agent is down; \(advice)")
        }
        if info.st_uid != 0, info.st_uid != agentUID {
            throw refuse("\(directory) is owned by uid \(info.st_uid), who could serve workloads a forged identity there "
                + "while the agent is down; \(advice)")
        }
        return created
    }
}
