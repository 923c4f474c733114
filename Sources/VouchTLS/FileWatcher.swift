#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Watches a directory with inotify and calls `onChange` when one of the
/// named files is replaced (rename into place) or closed after writing.
/// Bursts (an agent writes four files) are coalesced into one call.
public final class FileWatcher: @unchecked Sendable {
    private let directory: String
    private let names: Set<String>
    private let onChange: @Sendable () -> Void
    private let stopped = NSLock()
    private var isStopped = false

    public init(directory: String, names: Set<String>, onChange: @escaping @Sendable () -> Void) {
        self.directory = directory
        self.names = names
        self.onChange = onChange
    }

    /// Runs until `stop()`; call it on a thread of its own (it blocks in poll).
    public func run() throws {
        let fd = inotify_init1(Int32(IN_CLOEXEC))
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        guard inotify_add_watch(fd, directory, UInt32(IN_MOVED_TO | IN_CLOSE_WRITE)) >= 0 else {
            throw POSIXError(.init(rawValue: errno) ?? .EIO)
        }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var pending = false
        while !stopped.withLock({ isStopped }) {
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            // A short quiet period after the last event lets a whole rotation land first.
            let ready = poll(&descriptor, 1, pending ? 100 : 500)
            if ready == 0 {
                if pending { pending = false; onChange() }
                continue
            }
            guard ready > 0 else { continue }
            let count = read(fd, &buffer, buffer.count)
            guard count > 0 else { continue }
            var offset = 0
            while offset < count {
                let (length, name) = buffer.withUnsafeBytes { raw -> (Int, String) in
                    let nameLength = Int(raw.load(fromByteOffset: offset + 12, as: UInt32.self))
                    let start = offset + 16
                    let bytes = raw[start..<(start + nameLength)].prefix { $0 != 0 }
                    return (16 + nameLength, String(decoding: bytes, as: UTF8.self))
                }
                if names.contains(name) { pending = true }
                offset += length
            }
        }
    }

    public func stop() {
        stopped.withLock { isStopped = true }
    }
}
