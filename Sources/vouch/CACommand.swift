import ArgumentParser
import Foundation
import VouchAuthority
import VouchCrypto

struct CACommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca", abstract: "Create and inspect the CA.", subcommands: [CAInit.self])
}

struct CAInit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a root CA, an online intermediate, the CA listener's certificate and an admin certificate.")

    @Option(help: "Directory to create the CA in; must not hold a CA already.")
    var dir: String = "./vouch-ca"

    @Option(help: "SPIFFE trust domain, e.g. example.org.")
    var trustDomain: String

    @Option(name: .customLong("san"), help: "Extra DNS name or IP address for the CA listener's certificate (repeatable).")
    var sans: [String] = []

    @Option(help: "Encrypt the CA keys with the passphrase in this file (or set VOUCH_CA_PASSPHRASE).")
    var passphraseFile: String?

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        try await runReportingErrors {
            umask(0o077)
            let files = CAFiles(directory: dir)
            let ips = sans.filter { IPAddress.canonical($0) != nil }
            let names = sans.filter { IPAddress.canonical($0) == nil }.map { $0.lowercased() }
            let initializer = CAInitializer(files: files, trustDomain: trustDomain, passphrase: try readPassphrase(file: passphraseFile),
                                            serverDNSNames: names, serverIPAddresses: ips)
            _ = try await initializeCA(initializer)
            let admin = IssuancePolicy.adminID(trustDomain: trustDomain)
            if json {
                try printJSON([
                    "dir": files.directory.path, "trust_domain": trustDomain, "bundle": files.bundle,
                    "admin_spiffe_id": admin, "admin_cert": files.adminCertificate, "server_cert": files.serverCertificate,
                ])
            } else {
                print("""
                    Created CA for trust domain \(trustDomain) in \(files.directory.path)
                      trust bundle:   \(files.bundle)
                      server cert:    \(files.serverCertificate) (localhost, 127.0.0.1\(sans.isEmpty ? "" : ", " + sans.joined(separator: ", ")))
                      admin cert:     \(files.adminCertificate) (\(admin))
                    Start it with: vouch server --dir \(dir)
                    """)
            }
        }
    }
}
