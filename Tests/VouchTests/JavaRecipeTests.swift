import Foundation
import XCTest

/// README's Java recipe, run as written (only ports and directory prefixes substituted): two agents
/// write PKCS#12 keystores and truststores, the README's Server.java and Client.java (javac) make
/// one mTLS call with them, and the server sees the client's SPIFFE ID.
final class JavaRecipeTests: XCTestCase {
    func testJavaServerAndClientCompleteAnMTLSCallWithTheAgentsKeystores() throws {
        let ca = try CAFixture()
        let root = try temporaryDirectory(), etc = root + "/etc"
        let started = RecipeProcesses()
        addTeardownBlock {
            started.stopAll()
            try? FileManager.default.removeItem(atPath: root)
        }
        let server = etc + "/api", client = etc + "/client"
        for directory in [server, client] { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        try FileManager.default.copyItem(atPath: ca.caDir + "/bundle.pem", toPath: etc + "/ca-bundle.pem")
        try ca.createToken(spiffeID: "spiffe://example.org/java/api", ips: ["127.0.0.1"]).write(toFile: server + "/token", atomically: true, encoding: .utf8)
        try ca.createToken(spiffeID: "spiffe://example.org/java/client").write(toFile: client + "/token", atomically: true, encoding: .utf8)

        let text = try ReadmeRecipes.text(), shell = RecipeShell(directory: root)
        try ReadmeRecipes.block("java-server", in: text).write(toFile: root + "/Server.java", atomically: true, encoding: .utf8)
        try ReadmeRecipes.block("java-client", in: text).write(toFile: root + "/Client.java", atomically: true, encoding: .utf8)
        // The client's agent is the server's command in its own directory, as the README says.
        for directory in [server, client] {
            try shell.perform(try RecipeShell.commands(ofRecipe: "java-agent", in: text, replacing: [
                ("127.0.0.1:8443", ca.server.address), ("/etc/vouch/api", directory), ("/etc/vouch/", etc + "/"),
            ]), into: started)
        }
        for directory in [server, client] {
            XCTAssertTrue(waitForFiles(["keystore.p12", "truststore.p12"], in: directory), "no keystore in \(directory): \(started.logs)")
        }

        let port = try FakePostgres.freePort()
        var reply: CommandResult?, javaServer: RecipeProcess?
        let run = [("/etc/vouch/", etc + "/"), ("/opt/api", root + "/classes"), ("8444", String(port))]
        for command in try RecipeShell.commands(ofRecipe: "java-run", in: text, replacing: run) {
            if RecipeShell.isBackground(command) {
                let process = try shell.start(command)
                started.add(process, graceful: false)
                XCTAssertTrue(process.waitForOutput(timeout: 20) { $0.contains("listening on") }, "Server.java did not start: \(process.log)")
                javaServer = process
            } else {
                reply = try shell.run(command)
            }
        }
        let answer = try XCTUnwrap(reply, "java-run has no client line").stdout
        XCTAssertEqual(answer, "200 hello spiffe://example.org/java/client\n")
        let serverLog = try XCTUnwrap(javaServer, "java-run starts no server")
        XCTAssertTrue(serverLog.waitForOutput(timeout: 5) { $0.contains("request from spiffe://example.org/java/client") }, serverLog.log)
        print("java: Client.java got \"\(answer.trimmingCharacters(in: .newlines))\" from Server.java over mTLS with the agents' PKCS#12 files")
    }
}
