import Foundation

/// The process a `--pid-file` names, accepted only when the file and the process look like what
/// the operator configured: a regular file (not a symlink, FIFO or device) owned by the agent's
/// user or root and not writable by everyone, holding one positive integer; a live process of the
/// agent's user (or any process when both agent and file belong to root); and, with
/// `--signal-process-name`, a process of that name. Anything else is refused with the reason.
struct PidFileTarget {
    struct Refused: Error, CustomStringConvertible {
        let description: String
    }

    let pid: pid_t

    /// Linux keeps 15 characters of a process name in /proc/PID/comm.
    static let commLength = 15

    init(path: String, expectedName: String?) throws {
        // O_NOFOLLOW: a symlink fails with ELOOP instead of being followed; O_NONBLOCK: a FIFO cannot hang us.
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = errno
            throw Refused(description: reason == ELOOP ? "\(path) is a symbolic link" : "cannot open \(path): \(String(cString: strerror(reason)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Refused(description: "cannot stat \(path)") }
        guard info.st_mode & S_IFMT == S_IFREG else { throw Refused(description: "\(path) is not a regular file") }
        let agentUID = getuid()
        guard info.st_uid == agentUID || info.st_uid == 0 else {
            throw Refused(description: "\(path) belongs to uid \(info.st_uid), neither the agent's uid \(agentUID) nor root")
        }
        guard info.st_mode & S_IWOTH == 0 else { throw Refused(description: "\(path) is writable by every user") }

        var buffer = [UInt8](repeating: 0, count: 32)
        let count = read(fd, &buffer, buffer.count)
        guard count >= 0 else { throw Refused(description: "cannot read \(path)") }
        guard count < buffer.count else { throw Refused(description: "\(path) holds more than a pid") }
        guard let pid = Self.parse(Array(buffer[0..<count])) else {
            throw Refused(description: "\(path) does not hold just a positive integer")
        }

        guard let owner = Self.realUID(of: pid) else { throw Refused(description: "no process \(pid) (from \(path))") }
        guard owner == agentUID || (agentUID == 0 && info.st_uid == 0) else {
            throw Refused(description: "process \(pid) belongs to uid \(owner), not the agent's uid \(agentUID)")
        }
        if let expectedName {
            let name = Self.name(of: pid) ?? "?"
            guard name == String(expectedName.prefix(Self.commLength)) else {
                throw Refused(description: "process \(pid) is \(name), not \(expectedName)")
            }
        }
        self.pid = pid
    }

    /// Digits without a leading zero, optionally one trailing newline; nothing else.
    static func parse(_ bytes: [UInt8]) -> pid_t? {
        var digits = bytes[...]
        if digits.last == UInt8(ascii: "\n") { digits = digits.dropLast() }
        guard let first = digits.first, first != UInt8(ascii: "0"), digits.count <= 10,
              digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let value = Int32(String(decoding: digits, as: UTF8.self)), value > 0 else { return nil }
        return value
    }

    /// The real uid on the `Uid:` line of /proc/PID/status.
    static func realUID(of pid: pid_t) -> uid_t? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { return nil }
        return line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap { uid_t($0) }
    }

    static func name(of pid: pid_t) -> String? {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .newlines)
    }
}
