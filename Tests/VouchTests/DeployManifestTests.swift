import Foundation
import XCTest

/// The files in deploy/ must keep working as Vouch changes: units that systemd accepts,
/// manifests that parse and mount what they use, and only flags the binary still has.
final class DeployManifestTests: XCTestCase {
    static let repository = PythonClientTests.repository
    static let deploy = repository + "/deploy"

    func testSystemdUnitsVerifyAndUseExistingFlags() throws {
        let analyze = "/usr/bin/systemd-analyze"
        let units = try FileManager.default.contentsOfDirectory(atPath: Self.deploy + "/systemd").filter { $0.hasSuffix(".service") }
        XCTAssertEqual(Set(units), ["vouch-server.service", "vouch-agent@.service"])
        let scratch = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var paths: [String] = []
        for unit in units {
            let text = try String(contentsOfFile: Self.deploy + "/systemd/" + unit, encoding: .utf8)
            for required in ["NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectoryMode=0700", "UMask=0077", "CapabilityBoundingSet="] {
                XCTAssertTrue(text.contains(required), "\(unit) lacks \(required)")
            }
            XCTAssertTrue(text.contains("User="), "\(unit) must not run as root")
            try checkFlags(in: execStart(text), source: unit)
            // systemd-analyze wants an instance for a template and an executable that exists.
            let name = unit.replacingOccurrences(of: "@.service", with: "@web.service")
            let path = scratch + "/" + name
            try text.replacingOccurrences(of: "/usr/local/bin/vouch", with: VouchBinary.path).write(toFile: path, atomically: true, encoding: .utf8)
            paths.append(path)
        }
        guard FileManager.default.isExecutableFile(atPath: analyze) else { throw XCTSkip("systemd-analyze is not installed") }
        let verified = try execute(analyze, ["verify", "--man=no"] + paths)
        let output = verified.stdout + verified.stderr
        XCTAssertEqual(verified.status, 0, output)
        for complaint in ["Unknown key", "Unknown section", "Invalid", "Failed", "not executable"] {
            XCTAssertFalse(output.contains(complaint), output)
        }
    }

    /// scripts/check-manifests.py's report on a directory of manifests.
    func manifestReport(_ directory: String) throws -> (problems: [String], commands: [[String: Any]]) {
        let python = Self.repository + "/.build/python-venv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw CLIFailure("no Python venv: run scripts/setup-python.sh (scripts/test.sh does)")
        }
        let checked = try execute(python, [Self.repository + "/scripts/check-manifests.py", directory])
        XCTAssertEqual(checked.status, 0, checked.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(checked.lastLine.utf8)) as? [String: Any] ?? [:]
        return (report["problems"] as? [String] ?? ["no report: \(checked.stdout)"], report["commands"] as? [[String: Any]] ?? [])
    }

    func testKubernetesManifestsParseAndUseExistingFlags() throws {
        let report = try manifestReport(Self.deploy + "/kubernetes")
        XCTAssertEqual(report.problems, [])
        XCTAssertGreaterThanOrEqual(report.commands.count, 4, "server, ca init, DaemonSet agent and sidecar agent")
        try checkCommands(report.commands)
    }

    /// The replicated server: a Deployment of two or more replicas on PostgreSQL, out of the
    /// Service while its database is unreachable but not restarted for it.
    func testReplicatedServerManifestsRunSeveralReplicasOnPostgreSQL() throws {
        let directory = Self.deploy + "/kubernetes/replicated"
        let report = try manifestReport(directory)
        XCTAssertEqual(report.problems, [])
        let servers = report.commands.filter { ($0["args"] as? [String])?.first == "server" }
        XCTAssertEqual(servers.count, 1)
        try checkCommands(report.commands)

        // The checks bite: a copy with one replica, a password in the URL and liveness on /healthz.
        let broken = try temporaryDirectory()
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            var text = try String(contentsOfFile: directory + "/" + name, encoding: .utf8)
            text = text.replacingOccurrences(of: "replicas: 2", with: "replicas: 1")
                .replacingOccurrences(of: "postgres://vouch@", with: "postgres://vouch:secret@")
                .replacingOccurrences(of: "tcpSocket: {port: grpc}", with: "httpGet: {path: /healthz, port: http}")
            try text.write(toFile: broken + "/" + name, atomically: true, encoding: .utf8)
        }
        let problems = try manifestReport(broken).problems
        for expected in ["fewer than two replicas", "a password in the --database URL", "liveness on /healthz"] {
            XCTAssertTrue(problems.contains { $0.contains(expected) }, "\(expected): \(problems)")
        }
    }

    private func checkCommands(_ commands: [[String: Any]]) throws {
        for command in commands {
            let args = command["args"] as? [String] ?? []
            let words: [String]
            if args.count == 1, let shell = args.first, let range = shell.range(of: "/usr/local/bin/vouch ") {
                // An init container's shell line: the vouch command after the binary path.
                words = shell[range.upperBound...].split(separator: " ").map { String($0).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            } else {
                words = args
            }
            try checkFlags(in: words, source: command["file"] as? String ?? "?")
        }
    }

    func testContainerBuildIsMultiStageOnASlimRuntime() throws {
        let dockerfile = try String(contentsOfFile: Self.deploy + "/container/Dockerfile", encoding: .utf8)
        let stages = dockerfile.split(separator: "\n").filter { $0.hasPrefix("FROM ") }
        XCTAssertEqual(stages.count, 2, "a builder stage and a runtime stage")
        XCTAssertTrue(stages[0].contains("SWIFT_IMAGE") && stages[0].contains(" AS build"), String(stages[0]))
        XCTAssertTrue(dockerfile.contains("ARG SWIFT_IMAGE=swift:") && dockerfile.contains("ARG RUNTIME_IMAGE=debian:bookworm-slim"))
        for runtimeLibrary in ["libssl3", "libsqlite3-0"] { XCTAssertTrue(dockerfile.contains(runtimeLibrary), runtimeLibrary) }
        XCTAssertTrue(dockerfile.contains("COPY --from=build /out/vouch /usr/local/bin/vouch"))
        XCTAssertTrue(dockerfile.contains("USER 10001"), "the image runs as a non-root user")
        // The build copies exactly what `swift build` needs, and the build folder stays out of the context.
        for path in ["Package.swift", "Sources", "Tests"] { XCTAssertTrue(FileManager.default.fileExists(atPath: Self.repository + "/" + path)) }
        let ignored = try String(contentsOfFile: Self.repository + "/.dockerignore", encoding: .utf8)
        XCTAssertTrue(ignored.split(separator: "\n").contains(".build"))
    }

    /// The words of an ExecStart= line, with its continuation lines joined.
    private func execStart(_ unit: String) -> [String] {
        let joined = unit.replacingOccurrences(of: "\\\n", with: " ")
        guard let line = joined.split(separator: "\n").first(where: { $0.hasPrefix("ExecStart=") }) else { return [] }
        return line.dropFirst("ExecStart=".count).split(separator: " ").map(String.init).dropFirst().map { $0 }
    }

    /// Every `--flag` in `words` must appear in `vouch <subcommand> --help`.
    private func checkFlags(in words: [String], source: String) throws {
        let subcommand = Array(words.prefix { !$0.hasPrefix("-") })
        XCTAssertFalse(subcommand.isEmpty, "\(source): no vouch subcommand in \(words)")
        let help = try execute(VouchBinary.path, subcommand + ["--help"])
        XCTAssertEqual(help.status, 0, "\(source): `vouch \(subcommand.joined(separator: " "))` is not a command")
        for word in words where word.hasPrefix("--") {
            let flag = String(word.split(separator: "=").first ?? "")
            XCTAssertTrue(help.stdout.contains(flag + " ") || help.stdout.contains(flag + "\n") || help.stdout.contains(flag + ","),
                          "\(source): vouch \(subcommand.joined(separator: " ")) has no \(flag)")
        }
    }
}
