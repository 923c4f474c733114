import Foundation
import XCTest

/// README's HAProxy recipe run as written with Debian's HAProxy: the agent command and the frontend,
/// appended to a configuration like Debian's, HAProxy in master-worker mode as Debian's
/// haproxy.service runs it (`-W`, master pid in /run/haproxy.pid, USR2 reloads).
final class HAProxyRecipeTests: XCTestCase {
    func testClientsGetThroughThreeServerRotationsAndARevokedClientIsRefusedWithin10Seconds() async throws {
        let world = try RelyingPartyWorld()
        addTeardownBlock { world.stop() }
        let agent = try world.startAgent(recipe: "haproxy-agent", recipeDirectory: "lb", out: "lb", spiffeID: "spiffe://example.org/svc/lb",
                                         files: ["combined.pem", "bundle.pem", "crl.pem"])
        let frontend = try world.recipe("haproxy-frontend", [("bind :443 ", "bind :\(world.port) "), ("/etc/vouch/lb", agent.out)])
        let configuration = world.directory + "/haproxy.cfg", pidFile = world.runDirectory + "/haproxy.pid"
        // Debian's haproxy.cfg without logging to syslog, chroot and the stats socket.
        try """
            global
            \(getuid() == 0 ? "    user haproxy\n    group haproxy" : "")
            defaults
                mode http
                timeout connect 5s
                timeout client 50s
                timeout server 50s

            \(frontend)

            """.write(toFile: configuration, atomically: true, encoding: .utf8)
        let haproxy = try world.startServer(name: "haproxy", executable: "/usr/sbin/haproxy",
                                            arguments: ["-W", "-f", configuration, "-p", pidFile], pidFile: pidFile)

        let outcome = try await world.rotationsThenRevocation(server: haproxy, serverAgent: agent) { refusal in
            refusal.detail.contains("certificate revoked")
        }
        if let outcome { print(RelyingPartyWorld.summary("haproxy", outcome)) }
    }
}
