import Foundation
import Testing
import VouchAPI
import VouchAgent
@testable import vouch

/// `vouch agent --ca` and the config file's `agent.ca`: one address as always, or several
/// replicas; mistakes are named before the agent starts.
@Suite("CA address lists")
struct CAAddressListTests {
    private func resolved(_ arguments: [String], file: ConfigFile.AgentSection? = nil) throws -> CAAddressList {
        let command = try AgentCommand.parse(arguments + ["--ca-bundle", "/b.pem", "--out", "/out"])
        return try command.resolvedConfiguration(file).0.caAddresses
    }

    private func refusal(_ arguments: [String], file: ConfigFile.AgentSection? = nil) -> String? {
        do {
            _ = try resolved(arguments, file: file)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func oneAddressIsTheOnlyReplica() throws {
        let list = try resolved(["--ca", "127.0.0.1:8443"])
        #expect(list.addresses == [HostPort(host: "127.0.0.1", port: 8443)])
    }

    @Test func severalAddressesKeepTheirOrder() throws {
        #expect(try resolved(["--ca", "ca1.internal:8443, ca2.internal:9443,[::1]:8443"]).description
            == "ca1.internal:8443,ca2.internal:9443,[::1]:8443")
        #expect(try resolved(["--ca", "ca1:8443", "--ca", "ca2:8443"]).description == "ca1:8443,ca2:8443", "--ca repeated")
    }

    @Test(arguments: [
        ("a:8443,,b:8443", #"--ca: "a:8443,,b:8443": address 2 is empty"#),
        ("a:8443,", #"--ca: "a:8443,": address 2 is empty"#),
        (",a:8443", #"--ca: ",a:8443": address 1 is empty"#),
        ("", #"--ca: "": address 1 is empty"#),
        ("a:8443,A:8443", "--ca: A:8443 is listed twice"),
        ("a:8443,b:8443,a:8443", "--ca: a:8443 is listed twice"),
        ("a:0", "--ca: a:0 has no usable port (1-65535)"),
        ("a:8443,b:65536", #"--ca: "b:65536" is not HOST:PORT (port 1-65535, IPv6 as [::1]:8443)"#),
        ("a:8443,b", #"--ca: "b" is not HOST:PORT (port 1-65535, IPv6 as [::1]:8443)"#),
        ("a:https", #"--ca: "a:https" is not HOST:PORT (port 1-65535, IPv6 as [::1]:8443)"#),
        ((1...33).map { "ca\($0):8443" }.joined(separator: ","), "--ca: 33 CA addresses given; at most 32"),
    ])
    func mistakesAreNamed(text: String, message: String) {
        #expect(refusal(["--ca", text]) == message)
    }

    /// The example configuration shipped in deploy/ loads, and its agent lists two replicas.
    @Test func theExampleConfigurationLoads() throws {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/vouch.yaml").path
        let file = try ConfigFile.load(example)
        #expect(try resolved([], file: file.agent).description == "ca1.example.org:8443,ca2.example.org:8443")
        #expect(file.server?.dir == "/var/lib/vouch/ca")
    }

    @Test func theConfigFileTakesAListOrACommaString() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ca-list-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func section(_ yaml: String) throws -> ConfigFile.AgentSection? {
            try yaml.write(toFile: directory + "/vouch.yaml", atomically: true, encoding: .utf8)
            return try ConfigFile.load(directory + "/vouch.yaml").agent
        }
        #expect(try resolved([], file: section("agent:\n  ca: [ca1:8443, ca2:8443]\n")).description == "ca1:8443,ca2:8443")
        #expect(try resolved([], file: section("agent:\n  ca:\n    - ca1:8443\n    - ca2:8443\n")).description == "ca1:8443,ca2:8443")
        #expect(try resolved([], file: section("agent:\n  ca: ca1:8443,ca2:8443\n")).description == "ca1:8443,ca2:8443")
        #expect(try resolved([], file: section("agent:\n  ca: 127.0.0.1:8443\n")).description == "127.0.0.1:8443")
        #expect(try resolved(["--ca", "flag:1"], file: section("agent:\n  ca: [ca1:8443]\n")).description == "flag:1", "the flag wins")
        #expect(refusal([], file: try section("agent:\n  ca: [ca1:8443, ca1:8443]\n")) == "config key agent.ca: ca1:8443 is listed twice")
        #expect(refusal([], file: try section("agent:\n  ca: [ca1:8443, \"\"]\n")) == #"config key agent.ca: "": address 1 is empty"#)
        #expect(refusal([], file: try section("agent:\n  ca: []\n")) == "--ca is required (or agent.ca in --config)")
    }
}
