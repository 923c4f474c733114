import Foundation

/// Finds the password for a PostgreSQL URL, never from the URL itself. In order: a password file
/// named on the command line or in the config, `PGPASSWORD`, then the libpq password file
/// (`PGPASSFILE`, default `~/.pgpass`). None found: no password (trust or peer authentication).
public enum PostgresPassword {
    public struct Found: Sendable {
        public let password: String?
        /// Where it came from, for the log ("--database-password-file /etc/…", "PGPASSWORD", "~/.pgpass"); never the password.
        public let source: String
        /// Files skipped, as libpq warns of them (e.g. a ~/.pgpass others may read).
        public let warnings: [String]
    }

    public static func find(for url: PostgresURL, passwordFile: String?,
                            environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Found {
        if let passwordFile {
            var info = stat()
            let shared = stat(passwordFile, &info) == 0 && info.st_mode & 0o077 != 0
            return Found(password: try readPasswordFile(passwordFile), source: "password file \(passwordFile)",
                         warnings: shared ? ["password file \(passwordFile) has group or world access (permissions should be 0600 or less)"] : [])
        }
        if let password = environment["PGPASSWORD"], !password.isEmpty {
            return Found(password: password, source: "PGPASSWORD", warnings: [])
        }
        let path = environment["PGPASSFILE"] ?? environment["HOME"].map { $0 + "/.pgpass" }
        guard let path else { return Found(password: nil, source: "none", warnings: []) }
        var warnings: [String] = []
        guard let text = PGPassFile.readIfPrivate(path, warnings: &warnings) else {
            return Found(password: nil, source: "none", warnings: warnings)
        }
        guard let password = PGPassFile.lookup(in: text, host: url.host, port: url.port, database: url.database, user: url.user) else {
            return Found(password: nil, source: "none", warnings: warnings)
        }
        return Found(password: password, source: path, warnings: warnings)
    }

    /// The first line of `path`, without its line break.
    static func readPasswordFile(_ path: String) throws -> String {
        let data = try BoundedFile.read(path, limit: 4096, what: "the database password file")
        guard let text = String(data: data, encoding: .utf8) else { throw PostgresURLError("the database password file \(path) is not UTF-8 text") }
        let line = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).first.map(String.init) ?? ""
        let password = line.hasSuffix("\r") ? String(line.dropLast()) : line
        guard !password.isEmpty else { throw PostgresURLError("the database password file \(path) is empty") }
        return password
    }
}

/// libpq's password file: lines of `hostname:port:database:username:password`, where `*` in
/// one of the first four fields matches anything and `\` escapes `:` and `\`; the first line
/// that matches wins; `#` starts a comment line.
public enum PGPassFile {
    /// The file's text, or nil (with a warning) when it is not a plain file or group or others
    /// may access it: libpq ignores such a file, and so does Vouch. A missing file is no warning.
    public static func readIfPrivate(_ path: String, warnings: inout [String]) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            warnings.append("password file \(path) is not a plain file; ignored")
            return nil
        }
        guard info.st_mode & (S_IRWXG | S_IRWXO) == 0 else {
            warnings.append("password file \(path) has group or world access; ignored (permissions should be u=rw (0600) or less)")
            return nil
        }
        do {
            return String(decoding: try BoundedFile.read(path, limit: 1 << 20, what: "password file"), as: UTF8.self)
        } catch {
            warnings.append("\(error); ignored")
            return nil
        }
    }

    public static func lookup(in text: String, host: String, port: Int, database: String, user: String) -> String? {
        let wanted = [host, String(port), database, user]
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            guard !line.hasPrefix("#"), let fields = split(line), fields.count >= 5 else { continue }
            if zip(fields.prefix(4), wanted).allSatisfy({ field, value in field.text == value || (field.text == "*" && !field.escaped) }) {
                return fields[4].text
            }
        }
        return nil
    }

    /// The line's fields up to and including the password (which, as in libpq, ends at an unescaped `:`).
    private static func split(_ line: Substring) -> [(text: String, escaped: Bool)]? {
        var fields: [(text: String, escaped: Bool)] = []
        var current = "", escaped = false
        var iterator = line.makeIterator()
        while let character = iterator.next() {
            switch character {
            case "\\":
                guard let next = iterator.next() else { current.append(character); continue }
                current.append(next)
                escaped = true
            case ":":
                fields.append((current, escaped))
                if fields.count == 5 { return fields }
                (current, escaped) = ("", false)
            default:
                current.append(character)
            }
        }
        fields.append((current, escaped))
        return fields.count >= 5 ? fields : nil
    }
}
