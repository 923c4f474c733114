import Foundation

/// Reads a small file an operator names (a key, a passphrase, a certificate): a regular file of at
/// most `limit` bytes, or a refusal saying which. A FIFO would block the command for good and
/// `/dev/zero` would fill the memory, so neither is read.
public enum SmallFile {
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        /// open(2) or read(2) failed: the system's reason, e.g. "No such file or directory".
        case unreadable(String)
        case notRegular
        case tooLarge(limit: Int)

        public var description: String {
            switch self {
            case .unreadable(let reason): "cannot read it (\(reason))"
            case .notRegular: "is not a regular file"
            case .tooLarge(let limit): "is larger than \(limit) bytes"
            }
        }
    }

    public static func read(_ path: String, limit: Int) throws(Refusal) -> Data {
        // Non-blocking, so opening a FIFO returns at once; fstat then says what was opened.
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw .unreadable(String(cString: strerror(errno))) }
        defer { close(descriptor) }
        return try read(descriptor: descriptor, limit: limit)
    }

    /// The same from a descriptor the caller opened (non-blocking) and still owns.
    public static func read(descriptor: Int32, limit: Int) throws(Refusal) -> Data {
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { throw .notRegular }
        guard info.st_size <= limit else { throw .tooLarge(limit: limit) }
        // One byte more than allowed, to notice a file that grew since fstat.
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        var count = 0
        while count <= limit {
            let got = bytes.withUnsafeMutableBytes { Foundation.read(descriptor, $0.baseAddress! + count, limit + 1 - count) }
            if got < 0, errno == EINTR { continue }
            guard got >= 0 else { throw .unreadable(String(cString: strerror(errno))) }
            if got == 0 { break }
            count += got
        }
        guard count <= limit else { throw .tooLarge(limit: limit) }
        return Data(bytes.prefix(count))
    }

    /// The file as UTF-8 text (invalid bytes replaced: PEM and passphrases are ASCII).
    public static func text(_ path: String, limit: Int) throws(Refusal) -> String {
        String(decoding: try read(path, limit: limit), as: UTF8.self)
    }
}
