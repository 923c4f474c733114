import Foundation
import ServiceLifecycle
import Synchronization
import VouchAPI
import VouchConnectionLimits
import VouchHTTP

/// `vouch ui`'s HTTP listener as a ServiceLifecycle service: binds the loopback address, then
/// answers with `DashboardRoutes` once the port (maybe picked by the system) is known.
public final class DashboardServer: Service, Sendable {
    let endpoint: HTTPEndpoint

    /// `onListening` gets the start URL with the key; it is printed once and never logged.
    public init(listen: HostPort, connector: any AdminConnector, key: String = DashboardAccess.randomKey(),
                onListening: @escaping @Sendable (_ startURL: String) -> Void) throws {
        let address = try DashboardAccess.loopbackListen(listen)
        let routes = Mutex<DashboardRoutes?>(nil)
        endpoint = HTTPEndpoint(host: address.host, port: address.port, limits: ListenerLimits(maxConnections: 64),
                                onListening: { port in
            let access = DashboardAccess(key: key, listen: HostPort(host: address.host, port: port))
            routes.withLock { $0 = DashboardRoutes(access: access, connector: connector) }
            onListening(access.startURL)
        }) { request in
            guard let current = routes.withLock({ $0 }) else { return .text(503, "starting") }
            return await current.respond(request)
        }
    }

    public func run() async throws { try await endpoint.run() }
}
