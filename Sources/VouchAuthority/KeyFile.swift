import Foundation
import VouchFiles

/// Reads a key file named by data the CA does not control (an issuer row's `file:` key
/// reference): inside the CA directory only, a regular file of at most `limit` bytes, never
/// through a symbolic link. A FIFO would block the reload (and every later one) for good and
/// `/dev/zero` would fill the memory, so neither is read.
public enum KeyFile {
    /// A PEM key, encrypted or not, is a few hundred bytes; RSA 4096 under 4 KiB.
    public static let limit = 64 * 1024

    public struct Refusal: Error, CustomStringConvertible, Equatable {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// The text of `relative` under `directory`. Refused: an absolute path, a `..` component, a
    /// symbolic link on the way, a file that is not regular, one larger than `limit`.
    public static func read(_ relative: String, in directory: URL, limit: Int = limit) throws -> String {
        let components = relative.split(separator: "/", omittingEmptySubsequences: false)
        guard !relative.hasPrefix("/"), !components.contains(where: { $0 == ".." || $0 == "." || $0.isEmpty }) else {
            throw Refusal("\(relative) is not a plain path inside the CA directory")
        }
        // Every directory on the way, and the file itself, is opened without following links.
        var descriptor = open(directory.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw Refusal("cannot open \(directory.path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        for (index, component) in components.enumerated() {
            let last = index == components.count - 1
            let next = openat(descriptor, String(component), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (last ? O_NONBLOCK : O_DIRECTORY))
            guard next >= 0 else {
                let reason = errno == ELOOP || errno == ENOTDIR ? "a symbolic link or not a directory on the way" : String(cString: strerror(errno))
                throw Refusal("cannot read \(directory.appendingPathComponent(relative).path): \(reason)")
            }
            close(descriptor)
            descriptor = next
        }
        return try readRegular(descriptor, path: directory.appendingPathComponent(relative).path, limit: limit)
    }

    private static func readRegular(_ descriptor: Int32, path: String, limit: Int) throws -> String {
        let data: Data
        do {
            data = try SmallFile.read(descriptor: descriptor, limit: limit)
        } catch .unreadable(let reason) {
            throw Refusal("cannot read \(path): \(reason)")
        } catch {
            throw Refusal("\(path) \(error)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw Refusal("\(path) is not text") }
        return text
    }
}
