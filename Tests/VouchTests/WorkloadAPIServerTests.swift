import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle
import Synchronization
@testable import VouchAgent
import VouchCrypto
import VouchTLS
import VouchWorkloadAPI
import XCTest

/// The Workload API server in-process, on an enrolled identity and the test's clock, with grpc-swift
/// as the client: the states a real agent reaches only after minutes or a revocation (no identity
/// yet, expired, revoked, shutting down) and the socket path checks. The SPIFFE library against
/// the real agent is WorkloadAPIProcessTests.
final class WorkloadAPIServerTests: XCTestCase {
    static let header: Metadata = ["workload.spiffe.io": "true"]

    /// One agent's Workload API on the harness's identity files.
    private final class World: Sendable {
        let harness: KeeperHarness
        let directory: String
        let workload: WorkloadAPI
        let revoked = Mutex(false)
        var socket: String { directory + "/agent.sock" }

        init(configure: (inout WorkloadAPIConfiguration) -> Void = { _ in }) async throws {
            harness = try await KeeperHarness()
            directory = try shortSocketDirectory()
            var configuration = WorkloadAPIConfiguration(socketPath: directory + "/agent.sock")
            configure(&configuration)
            workload = WorkloadAPI(configuration: configuration, files: harness.files, clock: harness.clock, logger: harness.log.logger)
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        func start() async throws -> WorkloadAPIServer {
            try await XCTUnwrapAsync(try await workload.start(limits: harness.configuration.listenerLimits))
        }

        /// The Workload API of another agent (or of this one restarted) on the same socket path and files.
        func anotherAgent() -> WorkloadAPI {
            WorkloadAPI(configuration: WorkloadAPIConfiguration(socketPath: socket), files: harness.files, clock: harness.clock,
                        logger: harness.log.logger)
        }

        func refresh() { workload.refresh(isRevoked: { _ in self.revoked.withLock { $0 } }) }

        func follow() -> Task<Void, any Error> {
            Task { try await self.workload.followIdentity(isRevoked: { _ in self.revoked.withLock { $0 } }) }
        }
    }

    private static func withClient<Result: Sendable>(_ socket: String,
                                              _ body: (SpiffeWorkloadAPI.Client<HTTP2ClientTransport.Posix>) async throws -> Result)
        async throws -> Result {
        let transport = try HTTP2ClientTransport.Posix(target: .unixDomainSocket(path: socket), transportSecurity: .plaintext)
        return try await withGRPCClient(transport: transport) { try await body(SpiffeWorkloadAPI.Client(wrapping: $0)) }
    }

    /// The first `count` messages of a FetchX509Bundles stream; `received` hears of each.
    private static func bundleMessages(_ socket: String, count: Int,
                                       received: AsyncStream<Void>.Continuation) async throws -> [X509BundlesResponse] {
        try await withClient(socket) { client in
            try await client.fetchX509Bundles(X509BundlesRequest(), metadata: header) { response in
                var messages: [X509BundlesResponse] = []
                for try await message in response.messages {
                    messages.append(message)
                    received.yield()
                    if messages.count == count { break }
                }
                return messages
            }
        }
    }

    /// The first message of a FetchX509SVID stream.
    private func firstSVID(_ socket: String, metadata: Metadata = header) async throws -> X509SVIDResponse {
        try await Self.withClient(socket) { client in
            try await client.fetchX509SVID(X509SVIDRequest(), metadata: metadata) { response in
                for try await message in response.messages { return message }
                throw RPCError(code: .internalError, message: "the stream ended without a message")
            }
        }
    }

    func testBeforeTheFirstIdentityCallersAreToldUnavailableAndWithoutTheHeaderInvalidArgument() async throws {
        let world = try await World()
        let server = try await world.start()
        defer { server.stop() }
        await assertRPCError(.unavailable, "no identity published yet") { try await self.firstSVID(world.socket) }
        await assertRPCError(.invalidArgument, "no security header") { try await self.firstSVID(world.socket, metadata: [:]) }
        await assertRPCError(.invalidArgument, "header not true") {
            try await self.firstSVID(world.socket, metadata: ["workload.spiffe.io": "yes"])
        }
        do {
            _ = try await firstSVID(world.socket, metadata: [:])
        } catch let error as RPCError {
            XCTAssertEqual(error.message, "security header missing from request")
        }
    }

    func testTheStreamCarriesTheFilesAsDERAndEndsWithPermissionDeniedWhenTheCertificateExpires() async throws {
        let world = try await World()
        let server = try await world.start()
        defer { server.stop() }
        world.refresh()
        let identity = try world.harness.files.load()
        let (first, ending) = try await Self.withClient(world.socket) { client in
            try await client.fetchX509SVID(X509SVIDRequest(), metadata: Self.header) { response in
                var messages = response.messages.makeAsyncIterator()
                let first = try await messages.next()
                let follower = world.follow()
                defer { follower.cancel() }
                try await world.harness.clock.waitForSleepers()
                world.harness.clock.advance(to: identity.leaf.notValidAfter)
                do {
                    while try await messages.next() != nil {}
                    return (first, nil as RPCError?)
                } catch let error as RPCError {
                    return (first, error)
                }
            }
        }
        let svid = try XCTUnwrap(first?.svids.first)
        XCTAssertEqual(first?.svids.count, 1)
        XCTAssertEqual(svid.spiffeID, IdentityKeeperTests.web)
        let chain = try WorkloadAPIMaterial.der(identity.certificatePEM + identity.chainPEM)
        XCTAssertEqual(svid.x509Svid, chain, "leaf then intermediates, DER")
        XCTAssertTrue(svid.x509Svid.starts(with: try identity.leaf.der))
        XCTAssertEqual(svid.bundle, try WorkloadAPIMaterial.der(identity.bundlePEM))
        XCTAssertEqual(svid.x509SvidKey, try WorkloadAPIMaterial.der(identity.keyPEM), "PKCS#8 DER")
        XCTAssertEqual(ending?.code, .permissionDenied, "\(String(describing: ending))")
        XCTAssertTrue(ending?.message.contains("expired") ?? false, ending?.message ?? "")
        await assertRPCError(.permissionDenied, "a new call while expired") { try await self.firstSVID(world.socket) }
        XCTAssertTrue(world.harness.log.lines.contains { $0.contains("withdrawing the identity from workloads") })
    }

    func testARevokedCertificateIsWithdrawnFromOpenStreamsAndTheBundleStreamKeysTheTrustDomain() async throws {
        let world = try await World()
        let server = try await world.start()
        defer { server.stop() }
        world.refresh()
        let follower = world.follow()
        defer { follower.cancel() }
        let bundles = try await Self.withClient(world.socket) { client in
            try await client.fetchX509Bundles(X509BundlesRequest(), metadata: Self.header) { response in
                for try await message in response.messages { return message }
                throw RPCError(code: .internalError, message: "no message")
            }
        }
        XCTAssertEqual(Array(bundles.bundles.keys), ["spiffe://example.org"])
        XCTAssertEqual(bundles.bundles["spiffe://example.org"], try WorkloadAPIMaterial.der(try world.harness.files.load().bundlePEM))
        let ending: RPCError? = try await Self.withClient(world.socket) { client in
            try await client.fetchX509SVID(X509SVIDRequest(), metadata: Self.header) { response in
                var messages = response.messages.makeAsyncIterator()
                _ = try await messages.next()
                world.revoked.withLock { $0 = true }
                world.workload.changed()
                do {
                    while try await messages.next() != nil {}
                    return nil
                } catch let error as RPCError {
                    return error
                }
            }
        }
        XCTAssertEqual(ending?.code, .permissionDenied)
        XCTAssertTrue(ending?.message.contains("was revoked") ?? false, ending?.message ?? "")
    }

    func testARotationIsPushedToSVIDStreamsAndARootChangeToBundleStreamsToo() async throws {
        let world = try await World()
        let server = try await world.start()
        defer { server.stop() }
        world.refresh()
        let follower = world.follow()
        defer { follower.cancel() }
        let (subscribed, subscription) = AsyncStream.makeStream(of: Void.self)
        let socket = world.socket
        let bundleStream = Task { [socket, subscription] in
            try await WorkloadAPIServerTests.bundleMessages(socket, count: 2, received: subscription)
        }
        for await _ in subscribed { break }
        let files = world.harness.files
        let newRoot = try TestCA.material(now: world.harness.clock.now).root.pem
        let serials: [String] = try await Self.withClient(world.socket) { client in
            try await client.fetchX509SVID(X509SVIDRequest(), metadata: Self.header) { response in
                var messages = response.messages.makeAsyncIterator()
                let first = try await XCTUnwrapAsync(try await messages.next())
                // A rotation by the agent's renewal loop, then the change event the agent sends.
                let rotation = try await world.harness.startRotating()
                defer { rotation.cancel() }
                world.harness.clock.advance(by: 31)
                try await world.harness.waitFor { world.harness.served.withLock { $0.count } == 1 }
                world.workload.changed()
                let rotated = try await XCTUnwrapAsync(try await messages.next())
                // A root rollover adds a root to bundle.pem.
                try (try files.load().bundlePEM + newRoot).write(toFile: files.bundle, atomically: true, encoding: .utf8)
                world.workload.changed()
                let rolled = try await XCTUnwrapAsync(try await messages.next())
                XCTAssertEqual(rolled.svids.first?.x509Svid, rotated.svids.first?.x509Svid, "the same certificate")
                XCTAssertEqual(rolled.svids.first?.bundle, try WorkloadAPIMaterial.der(try files.load().bundlePEM))
                return try [first, rotated].map { try X509Certificate(der: Array(XCTUnwrap($0.svids.first).x509Svid)).serialHex }
            }
        }
        XCTAssertNotEqual(serials[0], serials[1], "the rotation was pushed")
        XCTAssertEqual(serials[1], try files.load().leaf.serialHex)
        let bundles = try await bundleStream.value
        XCTAssertEqual(bundles.count, 2, "a rotation is no bundle change; the root change is")
        XCTAssertEqual(bundles.last?.bundles["spiffe://example.org"], try WorkloadAPIMaterial.der(try files.load().bundlePEM))
        XCTAssertEqual(try WorkloadAPIMaterial.der(try files.load().bundlePEM).count,
                       try WorkloadAPIMaterial.der(newRoot).count + (bundles.first?.bundles["spiffe://example.org"]?.count ?? 0))
    }

    func testShutdownEndsOpenStreamsStopsTheServiceGroupAndRemovesTheSocket() async throws {
        let world = try await World()
        let server = try await world.start()
        world.refresh()
        let group = ServiceGroup(services: [server], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        let ending: RPCError? = try await Self.withClient(world.socket) { client in
            try await client.fetchX509SVID(X509SVIDRequest(), metadata: Self.header) { response in
                var messages = response.messages.makeAsyncIterator()
                _ = try await messages.next()
                await group.triggerGracefulShutdown()
                do {
                    while try await messages.next() != nil {}
                    return nil
                } catch let error as RPCError {
                    return error
                }
            }
        }
        XCTAssertEqual(ending?.code, .unavailable, "clients retry Unavailable: \(String(describing: ending))")
        // The group stops only once every stream has ended.
        try await running.value
        XCTAssertFalse(FileManager.default.fileExists(atPath: world.socket), "the socket file is removed")
    }

    func testASocketAnotherServerServesIsRefusedAndALeftoverSocketIsReplaced() async throws {
        let world = try await World()
        let server = try await world.start()
        let second = world.anotherAgent()
        do {
            _ = try await second.start(limits: world.harness.configuration.listenerLimits)
            XCTFail("a second server took the socket")
        } catch {
            XCTAssertEqual("\(error)", "another process is already serving the Workload API on \(world.socket)")
        }
        world.refresh()
        let stillServed = try await firstSVID(world.socket)
        XCTAssertEqual(stillServed.svids.first?.spiffeID, IdentityKeeperTests.web, "the first one still serves")
        server.stop()

        // A socket file nobody listens on, as a crashed agent leaves it.
        let leftover = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: world.socket.utf8) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(leftover, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        close(leftover)
        let restarted = world.anotherAgent()
        let again = try await XCTUnwrapAsync(try await restarted.start(limits: world.harness.configuration.listenerLimits))
        restarted.refresh(isRevoked: { _ in false })
        let replaced = try await firstSVID(world.socket)
        XCTAssertEqual(replaced.svids.first?.spiffeID, IdentityKeeperTests.web)
        again.stop()

        // Not a socket: refused, and left alone.
        FileManager.default.createFile(atPath: world.socket, contents: Data("x".utf8))
        do {
            _ = try await world.anotherAgent().start(limits: world.harness.configuration.listenerLimits)
            XCTFail("a regular file was replaced")
        } catch {
            XCTAssertEqual("\(error)", "cannot serve the Workload API on \(world.socket): the file exists and is not a socket")
        }
        XCTAssertEqual(FileManager.default.contents(atPath: world.socket), Data("x".utf8))
    }

    func testTheSocketGetsItsModeAndOwnerBeforeItIsAnnounced() async throws {
        let world = try await World { $0.mode = 0o660; $0.owner = 65534; $0.group = 65534 }
        let server = try await world.start()
        defer { server.stop() }
        var info = stat()
        XCTAssertEqual(lstat(world.socket, &info), 0)
        XCTAssertEqual(info.st_mode & 0o7777, 0o660)
        XCTAssertEqual(info.st_uid, 65534)
        XCTAssertEqual(info.st_gid, 65534)
        XCTAssertTrue(world.harness.log.lines.contains { $0.contains("workload API listening") && $0.contains("mode=660") })
    }
}

/// A new directory under /tmp: a socket path must fit in sun_path's 107 bytes, which the test
/// runner's temporary directory may not leave room for.
func shortSocketDirectory() throws -> String {
    var template = Array("/tmp/vw.XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw CLIFailure("mkdtemp: \(String(cString: strerror(errno)))") }
    return String(cString: made)
}

func XCTUnwrapAsync<T>(_ value: @autoclosure () async throws -> T?, file: StaticString = #filePath, line: UInt = #line) async throws -> T {
    let unwrapped = try await value()
    return try XCTUnwrap(unwrapped, file: file, line: line)
}
