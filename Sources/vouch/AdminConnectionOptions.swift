import ArgumentParser
import Foundation
import GRPCCore
import VouchAPI
import VouchAuthority
import VouchTLS

/// Options every admin command shares: where the CA is and which admin credential to use.
struct AdminConnectionOptions: ParsableArguments {
    @Option(help: "CA directory made by `vouch ca init` (admin.pem, admin_key.pem, bundle.pem).")
    var dir: String = "./vouch-ca"

    @Option(help: "CA server address, HOST:PORT.")
    var server: HostPort = HostPort(host: "127.0.0.1", port: 8443)

    @Option(help: "Admin client certificate (default: DIR/admin.pem).")
    var cert: String?

    @Option(help: "Admin client key (default: DIR/admin_key.pem).")
    var key: String?

    @Option(help: "Trust bundle (default: DIR/bundle.pem).")
    var bundle: String?

    @Option(help: "SPIFFE ID the CA server must present (default: spiffe://<trust domain of DIR>/vouch/server).")
    var serverSpiffeId: String?

    @Option(help: "Deadline for the call.")
    var timeout: DurationArgument = DurationArgument(argument: "30s")!

    var credentials: VouchClient.Credentials {
        let files = CAFiles(directory: dir)
        return VouchClient.Credentials(bundlePEMPath: bundle ?? files.bundle,
                                       certificatePEMPath: cert ?? files.adminCertificate,
                                       keyPEMPath: key ?? files.adminKey,
                                       serverIdentity: serverIdentity(files: files))
    }

    /// The configured ID, else the Vouch server ID of the directory's trust domain. Without a
    /// readable ca.json (a bundle copied off the CA host), any trust domain the bundle vouches for.
    private func serverIdentity(files: CAFiles) -> ServerIdentity {
        if let serverSpiffeId { return .spiffeID(serverSpiffeId) }
        return .vouchServer(trustDomain: (try? CASettings.load(from: files))?.trustDomain)
    }

    var callOptions: CallOptions { VouchClient.options(timeout: .seconds(timeout.seconds)) }

    func checkFiles() throws {
        for path in [credentials.bundlePEMPath, credentials.certificatePEMPath!, credentials.keyPEMPath!]
        where !FileManager.default.isReadableFile(atPath: path) {
            throw CLIError("cannot read \(path): pass --dir with a CA directory, or --cert/--key/--bundle")
        }
    }
}
