import Foundation

/// Reads a small configuration file (a password file, a root certificate file): a regular file of
/// at most `limit` bytes, or a clear error. A FIFO would block the start for good and `/dev/zero`
/// would fill the memory, so neither is read.
enum BoundedFile {
    static func read(_ path: String, limit: Int, what: String) throws -> Data {
        // Non-blocking, so opening a FIFO returns at once; fstat then says what was opened.
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw PostgresURLError("cannot read \(what) \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            throw PostgresURLError("\(what) \(path) is not a regular file")
        }
        guard info.st_size <= limit else { throw PostgresURLError("\(what) \(path) is larger than \(limit) bytes") }
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        var count = 0
        while count <= limit {
            let got = bytes.withUnsafeMutableBytes { Foundation.read(descriptor, $0.baseAddress! + count, limit + 1 - count) }
            if got < 0, errno == EINTR { continue }
            guard got >= 0 else { throw PostgresURLError("cannot read \(what) \(path): \(String(cString: strerror(errno)))") }
            if got == 0 { break }
            count += got
        }
        guard count <= limit else { throw PostgresURLError("\(what) \(path) is larger than \(limit) bytes") }
        return Data(bytes.prefix(count))
    }
}
