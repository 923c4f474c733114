import Foundation
import XCTest

/// README's PostgreSQL recipe, run as written (only ports and directory prefixes substituted): the
/// server's agent as the cluster's OS user feeding `ssl_cert_file`/`ssl_crl_file` and reloading
/// with `pg_ctl`, a client's agent feeding psql with `sslmode=verify-full`; a revoked client is refused.
final class PostgresRecipeTests: XCTestCase {
    /// PostgreSQL refuses to run as root: as root the cluster and the server's agent run as the
    /// user scripts/test-postgres.sh made, otherwise as the caller.
    private let clusterUser: String? = getuid() == 0 ? "vouch-test-pg" : nil

    func testPsqlWithTheAgentsCertificateIsAcceptedAndRefusedOnceRevoked() throws {
        let ca = try CAFixture()
        let root = try temporaryDirectory(), etc = root + "/etc", serverFiles = root + "/postgres-home/vouch", clientFiles = etc + "/app"
        let cluster = try startCluster(in: root + "/pg")
        let started = RecipeProcesses()
        addTeardownBlock {
            started.stopAll()
            _ = try? execute(TestPostgres.script, ["stop", cluster.directory])
            try? FileManager.default.removeItem(atPath: root)
        }
        try runPSQL(cluster.adminURL, "CREATE ROLE app LOGIN")

        // What the README's text asks for around the blocks: the CA's bundle, tokens, and the server's
        // token and files in a directory the database's user owns (as postgres's home is).
        try FileManager.default.createDirectory(atPath: clientFiles, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: serverFiles, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: ca.caDir + "/bundle.pem", toPath: etc + "/ca-bundle.pem")
        try ca.createToken(spiffeID: "spiffe://example.org/pg/server", ips: ["127.0.0.1"])
            .write(toFile: serverFiles + "/token", atomically: true, encoding: .utf8)
        try ca.createToken(spiffeID: "spiffe://example.org/pg/app").write(toFile: clientFiles + "/token", atomically: true, encoding: .utf8)
        if let clusterUser { try chown(clusterUser, serverFiles, serverFiles + "/token") }

        let text = try ReadmeRecipes.text(), shell = RecipeShell(directory: root)
        let files = ["svid_key.pem", "fullchain.pem", "bundle.pem", "crl.pem"]
        try shell.perform(try RecipeShell.commands(ofRecipe: "postgres-agent", in: text, replacing: [
            ("127.0.0.1:8443", ca.server.address), ("/etc/vouch/", etc + "/"), ("/var/lib/postgresql/vouch", serverFiles),
            ("/var/lib/postgresql/15/main", cluster.directory + "/data"), ("/usr/lib/postgresql/15/bin", TestPostgres.binaries),
        ]), asUser: clusterUser, into: started)
        XCTAssertTrue(complete(files, in: serverFiles), "the server's agent wrote no \(files): \(started.logs)")

        try cluster.configure(with: try ReadmeRecipes.substituting([("/var/lib/postgresql/vouch", serverFiles)],
                                                                   in: try ReadmeRecipes.block("postgres-conf", in: text), name: "postgres-conf"))
        try cluster.reload(as: clusterUser)

        // The client is the README's general client agent, with a token for spiffe://example.org/pg/app.
        try shell.perform(try RecipeShell.commands(ofRecipe: "client-agent", in: text, replacing: [
            ("127.0.0.1:8443", ca.server.address), ("/etc/vouch/", etc + "/"),
        ]), into: started)
        XCTAssertTrue(complete(files, in: clientFiles), "the client's agent wrote no \(files): \(started.logs)")
        let psql = try RecipeShell.commands(ofRecipe: "postgres-client", in: text, replacing: [
            ("/etc/vouch/", etc + "/"), ("port=5432", "port=\(cluster.port)"),
        ])
        XCTAssertEqual(psql.count, 1, "postgres-client should be one psql command: \(psql)")
        let query = try XCTUnwrap(psql.first)

        // pg_ctl reload only signals: the first queries may still meet the server without TLS.
        let accepted = try retry(query, in: shell, for: 10) { $0.status == 0 }
        XCTAssertEqual(accepted.result.status, 0, "select 1 with the agent's certificate: \(accepted.result.stderr)\n\(cluster.log)")
        XCTAssertTrue(accepted.result.stdout.contains("(1 row)"), accepted.result.stdout)

        // The map lets the certificate of spiffe://example.org/pg/app in as app only.
        let asSuperuser = try shell.complete(query.replacingOccurrences(of: "user=app", with: "user=vouch"))
        XCTAssertTrue(asSuperuser.stderr.contains("certificate authentication failed for user \"vouch\""),
                      "app's certificate as the superuser: \(asSuperuser.status) \(asSuperuser.stderr)")

        let revoked = try vouch("cert", "revoke", try certificateSerial(clientFiles + "/svid.pem"), "--dir", ca.caDir, "--server", ca.server.address)
        XCTAssertEqual(revoked.status, 0, revoked.stderr)
        let refused = try retry(query, in: shell, for: 10) { $0.status != 0 }
        XCTAssertNotEqual(refused.result.status, 0, "psql still accepted 10 s after the revocation\n\(cluster.log)\n\(started.logs)")
        XCTAssertTrue(refused.result.stderr.contains("certificate revoked"), "refused, but not as revoked: \(refused.result.stderr)\n\(cluster.log)")
        print("postgres: select 1 accepted with the agent's certificate, refused as another user; after vouch cert revoke refused in "
              + String(format: "%.1f s: ", refused.seconds) + refused.result.stderr.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Runs `command` every 100 ms until `done` holds for its result or `seconds` pass; the last
    /// result and how long it took.
    private func retry(_ command: String, in shell: RecipeShell, for seconds: TimeInterval,
                       until done: (CommandResult) -> Bool) throws -> (result: CommandResult, seconds: Double) {
        let start = Date()
        var result = try shell.complete(command)
        while !done(result), Date().timeIntervalSince(start) < seconds {
            Thread.sleep(forTimeInterval: 0.1)
            result = try shell.complete(command)
        }
        return (result, Date().timeIntervalSince(start))
    }

    /// Waits for svid.pem, renamed last in its set: the other files, crl.pem with a CRL from every
    /// intermediate and root, must be complete by then (PostgreSQL may start at that moment).
    private func complete(_ files: [String], in directory: String) -> Bool {
        eventually(timeout: 15) { FileManager.default.fileExists(atPath: directory + "/svid.pem") }
            && files.allSatisfy { RelyingPartyWorld.isComplete(directory, $0) }
    }

    private func startCluster(in directory: String) throws -> RecipeCluster {
        let started = try execute(TestPostgres.script, ["start", directory, String(getpid())])
        guard started.status == 0, let port = URLComponents(string: started.lastLine)?.port else {
            throw CLIFailure("scripts/test-postgres.sh start failed: \(started.stderr)")
        }
        return RecipeCluster(directory: directory, port: port, adminURL: started.lastLine)
    }

    private func chown(_ user: String, _ paths: String...) throws {
        let result = try execute("/bin/chown", [user] + paths)
        guard result.status == 0 else { throw CLIFailure("chown failed: \(result.stderr)") }
    }

    private func certificateSerial(_ path: String) throws -> String {
        let result = try openssl(["x509", "-in", path, "-noout", "-serial"])
        guard result.status == 0, let serial = result.stdout.split(separator: "=").last else { throw CLIFailure("no serial in \(path)") }
        return serial.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
    }
}

/// A throwaway cluster of scripts/test-postgres.sh, configured from the recipe.
private struct RecipeCluster {
    let directory: String, port: Int, adminURL: String

    var log: String { (try? String(contentsOfFile: directory + "/postgres.log", encoding: .utf8))?.split(separator: "\n").suffix(8).joined(separator: "\n") ?? "" }

    /// The recipe's block holds a part per file, each starting with a comment line naming it
    /// (`# pg_hba.conf ...`). pg_hba.conf's lines go first, since the first matching line decides.
    func configure(with block: String) throws {
        var parts: [String: String] = [:], current: String?
        for line in block.split(separator: "\n", omittingEmptySubsequences: false) {
            let name = line.hasPrefix("# ") ? line.dropFirst(2).prefix { $0 != " " }.trimmingCharacters(in: CharacterSet(charactersIn: ",:")) : ""
            if ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"].contains(name) {
                current = name
            }
            if let current { parts[current, default: ""] += line + "\n" }
        }
        for name in ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"] {
            guard let part = parts[name] else { throw CLIFailure("postgres-conf names no \(name)") }
            let path = directory + "/data/" + name
            let existing = try String(contentsOfFile: path, encoding: .utf8)
            // Written in place, so the file keeps its owner.
            try (name == "pg_hba.conf" ? part + "\n" + existing : existing + "\n" + part).write(toFile: path, atomically: false, encoding: .utf8)
        }
    }

    func reload(as user: String?) throws {
        let pgctl = [TestPostgres.binaries + "/pg_ctl", "reload", "-D", directory + "/data"]
        let command = user.map { ["/usr/sbin/runuser", "-u", $0, "--"] + pgctl } ?? pgctl
        let result = try execute(command[0], Array(command.dropFirst()))
        guard result.status == 0 else { throw CLIFailure("pg_ctl reload failed: \(result.stderr)") }
    }
}
