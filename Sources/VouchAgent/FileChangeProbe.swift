import Foundation

/// The bytes of some files before a write, to tell afterwards which kinds of change (`FileChange`)
/// it made on disk: hooks run for files that really changed, not for a write of the same bytes.
struct FileChangeProbe {
    private let before: [(change: FileChange, path: String, bytes: Data?)]

    /// Reads each file now (a missing one counts as empty of bytes).
    init(_ files: [(change: FileChange, path: String)]) {
        before = files.map { ($0.change, $0.path, FileManager.default.contents(atPath: $0.path)) }
    }

    /// The kinds with a file that now holds other bytes, appeared or went.
    func changes() -> FileChange {
        before.reduce(into: []) { changed, file in
            if FileManager.default.contents(atPath: file.path) != file.bytes { changed.insert(file.change) }
        }
    }
}
