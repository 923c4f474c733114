import Foundation
import VouchCrypto
import XCTest

/// A CA and agents started from README.md's recipes, under one directory standing for /etc/vouch
/// (its `run/` stands for /run, where the servers keep their pid files): a server agent, client
/// agents with identities of their own, and request loops from the clients to the server.
/// The only changes to the recipes: paths, ports, the `vouch` binary and, to see rotations within
/// a test, `--cert-ttl 20s` appended to each agent's command.
final class RelyingPartyWorld: @unchecked Sendable {
    static let certificateLifetime = "20s"

    let ca: CAFixture
    let readme: String
    /// The web server's port (443 in the recipes).
    let port: Int
    private var agents: [RecipeAgent] = []
    private var loops: [RequestLoop] = []
    private var servers: [RelyingPartyServer] = []

    /// Stands for /etc/vouch.
    var directory: String { ca.root }
    /// Stands for /run.
    var runDirectory: String { ca.root + "/run" }

    init() throws {
        ca = try CAFixture()
        readme = try ReadmeRecipes.text()
        port = try FakePostgres.freePort()
        try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: ca.caDir + "/bundle.pem", toPath: directory + "/ca-bundle.pem")
    }

    /// The recipe `name` with `replacements` made, each of which must occur in it.
    func recipe(_ name: String, _ replacements: [(String, String)]) throws -> String {
        try ReadmeRecipes.substituting(replacements, in: ReadmeRecipes.block(name, in: readme), name: name)
    }

    /// Starts the `vouch agent` recipe `name` with a fresh token for `spiffeID` (localhost, 127.0.0.1),
    /// its `/etc/vouch/<recipeDirectory>` moved to `<directory>/<out>`; returns once svid.pem is written, `files`
    /// complete by then (`isComplete`).
    func startAgent(recipe name: String, recipeDirectory: String, out: String, spiffeID: String, files: [String]) throws -> RecipeAgent {
        let outDirectory = directory + "/" + out
        try FileManager.default.createDirectory(atPath: outDirectory, withIntermediateDirectories: true)
        try ca.createToken(spiffeID: spiffeID, dns: ["localhost"], ips: ["127.0.0.1"])
            .write(toFile: outDirectory + "/token", atomically: true, encoding: .utf8)
        var replacements = [("127.0.0.1:8443", ca.server.address), ("/etc/vouch/" + recipeDirectory, outDirectory),
                            ("/etc/vouch/", directory + "/")]
        if try ReadmeRecipes.block(name, in: readme).contains("/run/") { replacements.append(("/run/", runDirectory + "/")) }
        let command = try recipe(name, replacements)
        let agent = try RecipeAgent(name: out, command: command, out: outDirectory, extraArguments: ["--cert-ttl", Self.certificateLifetime])
        agents.append(agent)
        guard eventually(timeout: 30, { !agent.isRunning || FileManager.default.fileExists(atPath: outDirectory + "/svid.pem") }),
              agent.isRunning else {
            throw CLIFailure("agent \(out) did not write svid.pem: \(agent.log)")
        }
        // svid.pem is renamed last in its set: a server started now must find the others complete,
        // crl.pem with every CRL of the chain included (nginx does not start on an empty one).
        let incomplete = files.filter { !Self.isComplete(outDirectory, $0) }
        guard incomplete.isEmpty else {
            throw CLIFailure("agent \(out) wrote svid.pem before \(incomplete.joined(separator: ", ")) was complete: \(agent.log)")
        }
        return agent
    }

    /// Whether `name` in `directory` is there and not empty, and crl.pem holds a CRL from every
    /// intermediate and root (nginx refuses an ssl_crl file without a CRL; one without the root's
    /// CRL refuses every client).
    static func isComplete(_ directory: String, _ name: String) -> Bool {
        func count(_ label: String, in file: String) -> Int {
            ((try? String(contentsOfFile: directory + "/" + file, encoding: .utf8)) ?? "").components(separatedBy: "-----BEGIN " + label).count - 1
        }
        guard name == "crl.pem" else { return count("", in: name) > 0 }  // any PEM block
        let issuers = count("CERTIFICATE", in: "chain.pem") + count("CERTIFICATE", in: "bundle.pem")
        return issuers > 0 && count("X509 CRL", in: name) >= issuers
    }

    /// A client agent from the `client-agent` recipe, in `<directory>/app-<letter>` as spiffe://example.org/app/<letter>.
    func startClient(_ letter: String) throws -> RecipeAgent {
        try startAgent(recipe: "client-agent", recipeDirectory: "app", out: "app-" + letter, spiffeID: "spiffe://example.org/app/" + letter,
                       files: ["client.pem", "bundle.pem"])
    }

    /// The `client-requests` recipe's curl call, in a loop, with `client`'s files.
    func startLoop(for client: RecipeAgent) -> RequestLoop {
        let loop = RequestLoop(name: client.name, curl: ["-sS", "--fail", "--cert", client.out + "/client.pem",
                                                         "--cacert", client.out + "/bundle.pem", "https://127.0.0.1:\(port)/"])
        loops.append(loop)
        return loop
    }

    func startServer(name: String, executable: String, arguments: [String], pidFile: String, logFile: String? = nil) throws -> RelyingPartyServer {
        let server = try RelyingPartyServer(name: name, executable: executable, arguments: arguments, port: port, pidFile: pidFile, logFile: logFile)
        servers.append(server)
        return server
    }

    /// Waits until the serial in `agent`'s svid.pem changed `count` times after `since` (a serial); the serials seen.
    func waitForRotations(of agent: RecipeAgent, count: Int, from first: String, timeout: TimeInterval) async throws -> [String] {
        var serials = [first]
        let deadline = Date().addingTimeInterval(timeout)
        while serials.count <= count, Date() < deadline {
            if let serial = agent.serial, serial != serials.last { serials.append(serial) }
            try await Task.sleep(for: .milliseconds(100))
        }
        return serials
    }

    /// Loops first (their last requests still see the servers), then servers, then agents.
    func stop() {
        for loop in loops { loop.stop() }
        for server in servers { server.stop() }
        for agent in agents { agent.stop() }
    }

    /// What a failure message needs: the end of every server's log and every agent's.
    var diagnostics: String {
        func end(_ log: String) -> String { log.split(separator: "\n", omittingEmptySubsequences: false).suffix(25).joined(separator: "\n") }
        return (servers.map { "--- \($0.name):\n" + end($0.log) } + agents.map { "--- agent \($0.name):\n" + end($0.log) })
            .joined(separator: "\n")
    }

    deinit { stop() }
}

/// A `vouch agent` started from a README recipe through `/bin/sh`, as an operator's shell runs it;
/// `exec` keeps the agent's pid the one the test started.
final class RecipeAgent: @unchecked Sendable {
    let name: String
    let out: String
    private let process = Process()
    private let output = OutputCollector()
    private let exit: ProcessExit

    init(name: String, command: String, out: String, extraArguments: [String]) throws {
        self.name = name
        self.out = out
        guard command.contains("vouch agent ") else { throw CLIFailure("recipe for \(name) runs no vouch agent: \(command)") }
        let vouchDirectory = (VouchBinary.path as NSString).deletingLastPathComponent
        let script = "export PATH=\"\(vouchDirectory):$PATH\"\n"
            + command.replacingOccurrences(of: "vouch agent ", with: "exec vouch agent ") + " " + extraArguments.joined(separator: " ")
        exit = ProcessExit(process)
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        try process.runLongLived(output: output)
    }

    var isRunning: Bool { process.isRunning }
    var log: String { output.text }

    /// The serial of the certificate in svid.pem now (nil while it is being replaced or absent).
    var serial: String? {
        (try? String(contentsOfFile: out + "/svid.pem", encoding: .utf8)).flatMap { try? X509Certificate(pem: $0).serialHex }
    }

    func stop() {
        _ = terminate(process, exit: exit)
        output.waitUntilDrained()
    }
}
