import Foundation
@testable import vouch
import VouchAgent
import XCTest

/// `--workload-api unix:///PATH` and its companions: which URIs name a socket (as SPIFFE libraries
/// read SPIFFE_ENDPOINT_SOCKET), the mode, owner and uid list, and the same keys in the config file.
final class WorkloadAPIConfigurationTests: XCTestCase {
    func testOnlyAUnixURIWithAnAbsolutePathThatFitsASocketAddressIsServed() throws {
        XCTAssertEqual(try WorkloadAPIConfiguration.socketPath(fromURI: "unix:///run/vouch/agent.sock"), "/run/vouch/agent.sock")
        XCTAssertEqual(try WorkloadAPIConfiguration.socketPath(fromURI: "unix:/run/vouch/agent.sock"), "/run/vouch/agent.sock")
        XCTAssertEqual(try WorkloadAPIConfiguration.socketPath(fromURI: "UNIX:///a.sock"), "/a.sock")
        let longest = "/" + String(repeating: "a", count: WorkloadAPIConfiguration.maxPathBytes - 1)
        XCTAssertEqual(try WorkloadAPIConfiguration.socketPath(fromURI: "unix://" + longest), longest)

        let refused: [(String, String)] = [
            ("tcp://127.0.0.1:8081", "--workload-api tcp://127.0.0.1:8081: only unix: sockets are served (not tcp:)"),
            ("/run/vouch/agent.sock", "--workload-api /run/vouch/agent.sock: expected a unix: URI such as unix:///run/vouch/agent.sock"),
            ("agent.sock", "--workload-api agent.sock: expected a unix: URI such as unix:///run/vouch/agent.sock"),
            ("unix://host/agent.sock", "--workload-api unix://host/agent.sock: a unix: URI has no host; write unix:///absolute/path"),
            ("unix:agent.sock", "--workload-api unix:agent.sock: the socket path must be absolute, e.g. unix:///run/vouch/agent.sock"),
            ("unix:///", "--workload-api unix:///: the socket path must be absolute, e.g. unix:///run/vouch/agent.sock"),
            ("unix:", "--workload-api unix:: the socket path must be absolute, e.g. unix:///run/vouch/agent.sock"),
            ("unix:///a.sock?x=1", "--workload-api unix:///a.sock?x=1: a query, fragment or NUL byte is not allowed"),
            ("unix://" + longest + "b", "--workload-api unix://\(longest)b: the path is 108 bytes; a Unix socket path holds at most 107"),
        ]
        for (uri, reason) in refused {
            XCTAssertThrowsError(try WorkloadAPIConfiguration.socketPath(fromURI: uri), uri) { XCTAssertEqual("\($0)", reason) }
        }
    }

    func testModeOwnerAndUIDListAreParsedOrRefusedWithTheReason() throws {
        XCTAssertEqual(try WorkloadAPIConfiguration.mode(fromOctal: "0600"), 0o600)
        XCTAssertEqual(try WorkloadAPIConfiguration.mode(fromOctal: "666"), 0o666)
        for bad in ["", "0800", "rw", "1777", "00600", "-1"] {
            XCTAssertThrowsError(try WorkloadAPIConfiguration.mode(fromOctal: bad), bad) {
                XCTAssertEqual("\($0)", "--workload-api-mode \(bad): expected octal permission bits such as 0600 or 0660")
            }
        }
        XCTAssertEqual(try WorkloadAPIConfiguration.uids(fromList: "0, 1000,1000"), [0, 1000])
        XCTAssertThrowsError(try WorkloadAPIConfiguration.uids(fromList: "0,www-data")) {
            XCTAssertEqual("\($0)", #"--workload-api-allow-uid 0,www-data: "www-data" is not a numeric uid"#)
        }
        XCTAssertThrowsError(try WorkloadAPIConfiguration.uids(fromList: "0,"))
        XCTAssertThrowsError(try WorkloadAPIConfiguration.uids(fromList: "4294967295"), "(uid_t)-1 means no uid")

        XCTAssertTrue(try WorkloadAPIConfiguration.owner(from: "root") == (0, nil))
        XCTAssertTrue(try WorkloadAPIConfiguration.owner(from: "nobody:0") == (65534, 0))
        XCTAssertTrue(try WorkloadAPIConfiguration.owner(from: "1000:1000") == (1000, 1000), "numbers need no database entry")
        XCTAssertThrowsError(try WorkloadAPIConfiguration.owner(from: "no-such-user-here")) {
            XCTAssertEqual("\($0)", "--workload-api-owner no-such-user-here: no user no-such-user-here")
        }
        XCTAssertThrowsError(try WorkloadAPIConfiguration.owner(from: "root:no-such-group-here")) {
            XCTAssertEqual("\($0)", "--workload-api-owner root:no-such-group-here: no group no-such-group-here")
        }
        XCTAssertThrowsError(try WorkloadAPIConfiguration.owner(from: ":0"))
    }

    private func resolved(_ arguments: [String], file: ConfigFile.AgentSection? = nil) throws -> WorkloadAPIConfiguration? {
        try AgentCommand.parse(["--ca", "127.0.0.1:8443", "--ca-bundle", "/b.pem", "--out", "/out"] + arguments)
            .resolvedConfiguration(file).0.workloadAPI
    }

    func testFlagsAndConfigKeysWithTheFlagsWinning() throws {
        XCTAssertNil(try resolved([]), "not served unless asked for")
        var expected = WorkloadAPIConfiguration(socketPath: "/run/vouch/agent.sock")
        XCTAssertEqual(try resolved(["--workload-api", "unix:///run/vouch/agent.sock"]), expected, "0600, the agent's user, any uid")
        XCTAssertEqual(expected.mode, 0o600)

        expected.mode = 0o660
        expected.owner = 0
        expected.group = 0
        expected.allowedUIDs = [0, 1000]
        XCTAssertEqual(try resolved(["--workload-api", "unix:///run/vouch/agent.sock", "--workload-api-mode", "0660",
                                     "--workload-api-owner", "root:root", "--workload-api-allow-uid", "0,1000"]), expected)

        var file = ConfigFile.AgentSection()
        file.workloadAPI = "unix:///run/vouch/agent.sock"
        file.workloadAPIMode = "0660"
        file.workloadAPIOwner = "root:root"
        file.workloadAPIAllowUID = [0, 1000]
        XCTAssertEqual(try resolved([], file: file), expected)
        expected.socketPath = "/tmp/other.sock"
        expected.allowedUIDs = [7]
        XCTAssertEqual(try resolved(["--workload-api", "unix:/tmp/other.sock", "--workload-api-allow-uid", "7"], file: file), expected)

        XCTAssertThrowsError(try resolved(["--workload-api-mode", "0666"])) {
            XCTAssertEqual("\($0)", "--workload-api-mode, -owner and -allow-uid need --workload-api")
        }
        XCTAssertThrowsError(try resolved(["--workload-api", "tcp://127.0.0.1:1"])) {
            XCTAssertEqual("\($0)", "--workload-api tcp://127.0.0.1:1: only unix: sockets are served (not tcp:)")
        }
    }

    func testTheConfigFileKnowsTheKeys() throws {
        let directory = try shortSocketDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/vouch.yaml"
        try """
            agent:
              workload_api: unix:///run/vouch/agent.sock
              workload_api_mode: 0640
              workload_api_owner: root
              workload_api_allow_uid: [0, 1000]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let section = try XCTUnwrap(ConfigFile.load(path).agent)
        XCTAssertEqual(section.workloadAPI, "unix:///run/vouch/agent.sock")
        XCTAssertEqual(section.workloadAPIMode, "0640")
        XCTAssertEqual(section.workloadAPIOwner, "root")
        XCTAssertEqual(section.workloadAPIAllowUID, [0, 1000])
    }
}
