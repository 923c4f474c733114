import Foundation

/// Writes files so that readers see either the old or the new content, never
/// a mix: temp file in the same directory, fsync, rename, fsync directory.
public enum AtomicFile {
    public struct WriteError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws {
        try writeAll([(path, bytes, mode)])
    }

    /// Writes several files of one directory so that a failure (disk full, read-only) changes
    /// none of them: every temp file is written and fsynced first, and only then renamed in order.
    public static func writeAll(_ files: [(path: String, bytes: [UInt8], mode: mode_t)]) throws {
        var temps: [String] = []
        var renamed = 0
        defer {
            for temp in temps.dropFirst(renamed) { unlink(temp) }
        }
        for file in files {
            temps.append(try writeTemp(file.bytes, beside: file.path, mode: file.mode))
        }
        for (temp, file) in zip(temps, files) {
            guard rename(temp, file.path) == 0 else { throw failure("rename to \(file.path)") }
            renamed += 1
        }
        for directory in Set(files.map { directoryOf($0.path) }) {
            let dirFD = open(directory, O_RDONLY | O_DIRECTORY)
            if dirFD >= 0 {
                defer { close(dirFD) }
                guard fsync(dirFD) == 0 else { throw failure("fsync directory \(directory)") }
            }
        }
    }

    private static func directoryOf(_ path: String) -> String {
        let directory = (path as NSString).deletingLastPathComponent
        return directory.isEmpty ? "." : directory
    }

    /// A fully written and fsynced temp file in the same directory as `path`.
    private static func writeTemp(_ bytes: [UInt8], beside path: String, mode: mode_t) throws -> String {
        let name = (path as NSString).lastPathComponent
        var template = Array("\(directoryOf(path))/.\(name).tmp-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw failure("create temp file for \(path)") }
        let tempPath = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        do {
            defer { close(fd) }
            guard fchmod(fd, mode) == 0 else { throw failure("chmod \(tempPath)") }
            var offset = 0
            while offset < bytes.count {
                let written = bytes[offset...].withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
                if written < 0 {
                    if errno == EINTR { continue }
                    throw failure("write \(tempPath)")
                }
                offset += written
            }
            guard fsync(fd) == 0 else { throw failure("fsync \(tempPath)") }
        } catch {
            unlink(tempPath)
            throw error
        }
        return tempPath
    }

    public static func write(_ text: String, to path: String, mode: mode_t = 0o644) throws {
        try write(Array(text.utf8), to: path, mode: mode)
    }

    /// Creates a file that must not exist yet (O_EXCL), fsynced, with `mode`.
    public static func create(_ bytes: [UInt8], at path: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode)
        guard fd >= 0 else { throw failure("create \(path)") }
        defer { close(fd) }
        guard fchmod(fd, mode) == 0 else { throw failure("chmod \(path)") }
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count, fsync(fd) == 0 else { throw failure("write \(path)") }
    }

    private static func failure(_ what: String) -> WriteError {
        WriteError(description: "\(what): \(String(cString: strerror(errno)))")
    }
}
