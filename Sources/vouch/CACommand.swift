import ArgumentParser
import Foundation
import VouchAuthority
import VouchCrypto
import VouchFiles
import VouchIdentityRules
import VouchSQLiteStore

struct CACommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ca", abstract: "Create and inspect the CA.", subcommands: [CAInit.self, CAAdminCert.self, CAServerCert.self, CAIntermediateCommand.self, CARootCommand.self])
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

    @OptionGroup(title: "Keys in a PKCS#11 token (made there, never extractable)") var pkcs11: PKCS11Options

    @OptionGroup var databaseOptions: DatabaseOptions

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        try await runReportingErrors {
            umask(0o077)
            let files = CAFiles(directory: dir)
            let ips = sans.filter { IPAddress.canonical($0) != nil }
            let names = sans.filter { IPAddress.canonical($0) == nil }.map { $0.lowercased() }
            let keyStore = try tokenKeyStore()
            var initializer = CAInitializer(files: files, trustDomain: trustDomain,
                                            passphrase: keyStore == nil ? try readPassphrase(file: passphraseFile) : nil,
                                            serverDNSNames: names, serverIPAddresses: ips)
            if let keyStore { initializer.keyStore = keyStore }
            let store: any AuthorityStore
            if databaseOptions.database != nil {
                // The servers then run with the same --database: they find the CA's own certificates there.
                store = try await databaseOptions.open(files: files, logger: DatabaseOptions.commandLogger)
                try await initializeCA(initializer, in: store)
            } else {
                store = try await initializeCA(initializer)
            }
            if let keyStore = initializer.keyStore.tokens { tokenSummary(keyStore) }
            // The database names its issuers from the start, so no other directory's pair can be adopted into it.
            try await adoptDirectoryIssuers(files: files, store: store)
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
                    Start it with: vouch server --dir \(dir)\(pkcs11.pinFile.map { " --pkcs11-pin-file \($0)" } ?? "")
                    """)
            }
        }
    }
}

extension CAInit {
    /// With `--pkcs11-pin-file`: the token (and root token) the keys are made in.
    private func tokenKeyStore() throws -> CAKeyStore? {
        guard pkcs11.isGiven else { return nil }
        guard pkcs11.pinFile != nil else {
            throw CLIError("the --pkcs11-* flags need --pkcs11-pin-file (the user PIN of --pkcs11-token)")
        }
        guard passphraseFile == nil else {
            throw CLIError("--passphrase-file: keys in a PKCS#11 token are protected by its PIN, not a passphrase")
        }
        // Refused before a key is made: the token must not fill with keys of CAs that were never created.
        let files = CAFiles(directory: dir)
        if FileManager.default.fileExists(atPath: files.settings) {
            throw CLIError("\(files.settings) exists: refusing to overwrite an existing CA")
        }
        guard let token = try pkcs11.openToken(settings: nil) else { return nil }
        guard pkcs11.rootToken != nil || pkcs11.rootPinFile != nil else {
            warnRootInSameToken(token)
            return .token(token, root: token)
        }
        guard pkcs11.rootToken != nil else { throw CLIError("--pkcs11-root-pin-file needs --pkcs11-root-token (the root token's label)") }
        guard let root = try pkcs11.openRootToken(label: nil, settings: nil) else { return nil }
        return .token(token, root: root)
    }

    private func tokenSummary(_ tokens: (intermediate: PKCS11Token, root: PKCS11Token)) {
        guard !json else { return }
        print("Keys made in PKCS#11 token \(tokens.intermediate.label.debugDescription)"
            + (tokens.root === tokens.intermediate ? "" : " (root: \(tokens.root.label.debugDescription))")
            + "; ca.json names them, no key file was written for them")
    }
}

/// The only way, besides `ca init`, to an admin identity: tokens and renewals never grant one.
/// Run again on the same --out with the same ID, it renews in place.
struct CAAdminCert: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin-cert",
        abstract: "Issue or renew an admin client certificate on the CA host (list its ID with `vouch server --admin-id`).",
        discussion: """
            Signs with the intermediate that signs now (from the database). When --out already holds admin.pem for the same \
            SPIFFE ID, both files are replaced by a new key and certificate and the old certificate is recorded as renewed; \
            --out holding another ID's certificate is refused.
            """)

    @Option(help: "CA directory made by `vouch ca init`.")
    var dir: String = "./vouch-ca"

    @Option(help: "SPIFFE ID of the admin, in the CA's trust domain.")
    var spiffeId: String

    @Option(help: "Directory to write admin.pem and admin_key.pem into; only a certificate for the same ID is replaced (renewed).")
    var out: String

    @Option(help: "Certificate lifetime (default 90d).")
    var ttl: DurationArgument = DurationArgument(argument: "90d")!

    @Option(help: "Passphrase file for encrypted CA keys (or set VOUCH_CA_PASSPHRASE).")
    var passphraseFile: String?

    @OptionGroup var pkcs11: PKCS11Options

    @OptionGroup var databaseOptions: DatabaseOptions

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        try await runReportingErrors {
            umask(0o077)
            guard ttl.seconds > 0 else { throw CLIError("--ttl must be positive") }
            // Before any file is written: a database that cannot be opened leaves no admin identity unrecorded.
            let context = try await IssuerCommandContext.open(dir: dir, passphraseFile: passphraseFile, databaseOptions: databaseOptions,
                                                              pkcs11: pkcs11)
            let issuer = try await AdminCertificateIssuer(context: context)
            let certificatePath = out + "/admin.pem", keyPath = out + "/admin_key.pem"
            let previous = try AdminCertificateIssuer.previous(at: certificatePath, spiffeID: spiffeId)
            let issued = try LocalIssuance.adminCertificate(signer: issuer.signer, trustDomain: context.settings.trustDomain,
                                                            spiffeID: spiffeId, lifetime: TimeInterval(ttl.seconds), now: Date())
            var record = issued.record
            record.issuerID = issuer.record.id
            let chainPEM = issuer.chainPEM
            // A certificate this database never recorded (made by `ca init` before the CA moved
            // to PostgreSQL) is replaced by a fresh one: there is no lineage to continue.
            if let previous {
                // Recorded first: should writing fail, the next run replaces the recorded successor.
                try await LocalCertificateRecord.record(&record, replacing: previous, store: context.store, label: spiffeId,
                                                        command: "ca admin-cert")
                try AtomicFile.writeAll([(keyPath, Array(try issued.key.pkcs8PEM().utf8), 0o600),
                                         (certificatePath, Array((issued.certificate.pem + chainPEM).utf8), 0o644)])
            } else {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                // Key first and exclusive: a key without its certificate is never replaced.
                try AtomicFile.create(Array(try issued.key.pkcs8PEM().utf8), at: keyPath, mode: 0o600)
                try AtomicFile.write(issued.certificate.pem + chainPEM, to: certificatePath)
                try await context.store.insertCertificate(record, audit: AuditEntry(
                    time: issued.record.issuedAt, actor: "local", action: .issue, subject: issued.record.serial, peer: "local",
                    detail: "\(spiffeId) (ca admin-cert)"))
            }
            if json {
                try printJSON(["serial": issued.record.serial, "spiffe_id": spiffeId, "cert": certificatePath, "key": keyPath,
                               "not_after": issued.record.notAfter.formatted(.iso8601), "renewed_from": previous?.serialHex ?? "",
                               "issuer": issuer.record.serial])
            } else {
                let verb = previous == nil ? "issued" : "renewed"
                print("\(verb) admin certificate \(issued.record.serial) for \(spiffeId) until \(issued.record.notAfter.formatted(.iso8601))"
                    + (previous.map { " (replaces \($0.serialHex))" } ?? ""))
                print("  cert: \(certificatePath)\n  key:  \(keyPath)")
            }
        }
    }
}
