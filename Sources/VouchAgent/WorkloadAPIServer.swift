import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import VouchConnectionLimits
import VouchHTTP

/// The Workload API's gRPC server on its Unix socket, plaintext: who may connect is decided by
/// the socket file's mode and owner and by the peer's uid, not by TLS. Started before the agent
/// enrolls, stopped with it; the socket file is removed on the way out.
final class WorkloadAPIServer: Service, Sendable {
    let configuration: WorkloadAPIConfiguration
    let board: WorkloadAPIBoard
    let logger: Logger
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let serving: Task<Void, any Error>
    private let gate: AcceptGate
    /// The socket file this server made (device, inode): only that one is removed on shutdown.
    private let socketFile: (dev: UInt64, ino: UInt64)
    private let stopped = Atomic<Bool>(false)

    private init(configuration: WorkloadAPIConfiguration, board: WorkloadAPIBoard, logger: Logger,
                 server: GRPCServer<HTTP2ServerTransport.Posix>, serving: Task<Void, any Error>, gate: AcceptGate,
                 socketFile: (dev: UInt64, ino: UInt64)) {
        self.configuration = configuration
        self.board = board
        self.logger = logger
        self.server = server
        self.serving = serving
        self.gate = gate
        self.socketFile = socketFile
    }

    /// Binds the socket, gives it its owner and mode, and serves; refuses (with a one-line reason)
    /// a directory others could bind in (WorkloadAPISocketDirectory), a path another process
    /// serves, or one that is not a socket.
    static func start(_ configuration: WorkloadAPIConfiguration, board: WorkloadAPIBoard, limits: ListenerLimits,
                      logger: Logger) async throws -> WorkloadAPIServer {
        let path = configuration.socketPath
        if let created = try WorkloadAPISocketDirectory.prepare(path) {
            logger.info("workload API: created the socket's directory", metadata: ["directory": "\(created)", "mode": "755"])
        }
        try checkFree(path)
        let gate = AcceptGate()
        let transport = HTTP2ServerTransport.Posix(
            address: .unixDomainSocket(path: path), transportSecurity: .plaintext,
            config: .defaults { config in
                config.rpc.maxRequestPayloadSize = 64 * 1024
                // Each stream holds a task and a watcher: one caller's connection may not open them without end.
                config.http2.maxConcurrentStreams = 100
                config.channelDebuggingCallbacks.onBindTCPListener = { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let handlers = channel.pipeline.syncOperations
                        try handlers.addHandler(ConnectionCapHandler(limit: limits.maxConnections, gate: gate) { limit, refused in
                            logger.warning("connection limit reached: refusing new connections",
                                           metadata: ["listener": "workload API", "max_connections": "\(limit)", "refused": "\(refused)"])
                        })
                        if !configuration.allowedUIDs.isEmpty {
                            try handlers.addHandler(WorkloadAPIPeerGate(allowedUIDs: configuration.allowedUIDs, logger: logger))
                        }
                    }
                }
            })
        let server = GRPCServer(transport: transport, services: [WorkloadAPIService(board: board, logger: logger)],
                                interceptors: [WorkloadAPIHeaderCheck()])
        let serving = Task { try await server.serve() }
        do {
            _ = try await server.listeningAddress
        } catch {
            serving.cancel()
            throw WorkloadAPIConfigurationError("cannot serve the Workload API on \(path): \(error)")
        }
        // The agent runs with umask 077, so until now the socket was the agent user's alone.
        var info = stat()
        do {
            if let owner = configuration.owner, chown(path, owner, configuration.group ?? gid_t.max) != 0 {
                throw WorkloadAPIConfigurationError("cannot give \(path) to uid \(owner): \(String(cString: strerror(errno)))")
            }
            guard chmod(path, configuration.mode) == 0, lstat(path, &info) == 0 else {
                throw WorkloadAPIConfigurationError("cannot set the mode of \(path): \(String(cString: strerror(errno)))")
            }
        } catch {
            server.beginGracefulShutdown()
            unlink(path)
            throw error
        }
        logger.info("workload API listening", metadata: [
            "socket": "\(path)", "mode": "\(String(configuration.mode, radix: 8))",
            "allowed_uids": "\(configuration.allowedUIDs.isEmpty ? "any" : configuration.allowedUIDs.sorted().map(String.init).joined(separator: ","))"])
        return WorkloadAPIServer(configuration: configuration, board: board, logger: logger, server: server, serving: serving, gate: gate,
                                 socketFile: (UInt64(info.st_dev), UInt64(info.st_ino)))
    }

    /// NIO replaces an existing socket file without asking: a second agent would silently take
    /// the path from the first. A socket nobody answers on is left over from a crash and replaced.
    static func checkFree(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw WorkloadAPIConfigurationError("cannot serve the Workload API on \(path): the file exists and is not a socket")
        }
        switch connectResult(path) {
        case 0:
            throw WorkloadAPIConfigurationError("another process is already serving the Workload API on \(path)")
        case ECONNREFUSED, ENOENT:
            return
        case let error:
            throw WorkloadAPIConfigurationError("cannot serve the Workload API on \(path): checking the existing socket: "
                + String(cString: strerror(error)))
        }
    }

    /// 0 if a connection to the socket at `path` is accepted, else the errno.
    private static func connectResult(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: path.utf8.prefix(buffer.count - 1))
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return result == 0 ? 0 : errno
    }

    func run() async throws {
        await untilShutdown()
        stop()
        try? await serving.value
        logger.info("workload API stopped")
    }

    /// Ends the open streams (graceful shutdown waits for them), stops accepting and removes the
    /// socket file; once.
    func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        gate.close()
        board.finish()
        server.beginGracefulShutdown()
        var info = stat()
        let path = configuration.socketPath
        if lstat(path, &info) == 0, UInt64(info.st_dev) == socketFile.dev, UInt64(info.st_ino) == socketFile.ino {
            unlink(path)
        }
    }
}
