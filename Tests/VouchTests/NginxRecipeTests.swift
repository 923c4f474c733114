import Foundation
import XCTest

/// README's nginx recipe run as written with Debian's nginx: the agent command and the site block,
/// in a main configuration like Debian's (`user www-data`, `pid /run/nginx.pid`).
final class NginxRecipeTests: XCTestCase {
    func testClientsGetThroughThreeServerRotationsAndARevokedClientIsRefusedWithin10Seconds() async throws {
        let world = try RelyingPartyWorld()
        addTeardownBlock { world.stop() }
        let (agent, nginx) = try world.startNginxFromRecipe()

        let outcome = try await world.rotationsThenRevocation(server: nginx, serverAgent: agent) { _ in
            nginx.log.contains("client SSL certificate verify error: (23:certificate revoked)")
        }
        if let outcome { print(RelyingPartyWorld.summary("nginx", outcome)) }
    }
}

extension RelyingPartyWorld {
    /// The nginx-agent recipe's agent, then nginx with the nginx-site recipe; returns once nginx accepts connections.
    func startNginxFromRecipe() throws -> (RecipeAgent, RelyingPartyServer) {
        let agent = try startAgent(recipe: "nginx-agent", recipeDirectory: "web", out: "web", spiffeID: "spiffe://example.org/svc/web",
                                   files: ["fullchain.pem", "svid_key.pem", "bundle.pem", "crl.pem"])
        let site = try recipe("nginx-site", [("listen 443 ssl", "listen \(port) ssl"), ("/etc/vouch/web", agent.out)])
        let siteFile = directory + "/nginx-site.conf", mainFile = directory + "/nginx.conf"
        let pidFile = runDirectory + "/nginx.pid", errorLog = directory + "/nginx-error.log"
        try site.write(toFile: siteFile, atomically: true, encoding: .utf8)
        // Debian's nginx.conf, cut to what the site needs; the error log at info level shows why a client was refused.
        try """
            \(getuid() == 0 ? "user www-data;" : "")
            pid \(pidFile);
            error_log \(errorLog) info;
            events {}
            http {
                access_log \(directory)/nginx-access.log;
                include \(siteFile);
            }

            """.write(toFile: mainFile, atomically: true, encoding: .utf8)
        let nginx = try startServer(name: "nginx", executable: "/usr/sbin/nginx",
                                    arguments: ["-c", mainFile, "-p", directory, "-e", errorLog, "-g", "daemon off;"],
                                    pidFile: pidFile, logFile: errorLog)
        return (agent, nginx)
    }
}
