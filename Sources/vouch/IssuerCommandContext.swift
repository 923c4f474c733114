import ArgumentParser
import Foundation
import VouchAPI
import VouchAuthority
import VouchCrypto
import VouchFiles

/// What every `vouch ca intermediate|root` command opens: the CA directory, its store, the
/// passphrase, and the flags they share.
struct IssuerOptions: ParsableArguments {
    @Option(help: "CA directory made by `vouch ca init`.")
    var dir: String = "./vouch-ca"

    @Option(help: "Passphrase file for encrypted CA keys (or set VOUCH_CA_PASSPHRASE).")
    var passphraseFile: String?

    @OptionGroup var databaseOptions: DatabaseOptions

    @Flag(help: "Print the result as one JSON object.")
    var json = false
}

/// What `ca intermediate rotate` and `ca root prepare` take besides `IssuerOptions`: the old root's
/// key, and where the new intermediate's key goes.
struct NewIssuerOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The active root's key (default: DIR/root_key.pem, or where `root prepare` put it).", valueName: "file"))
    var rootKey: String?

    @Flag(help: "On PostgreSQL: keep the new intermediate's key in DIR/issuers/<serial>/key.pem instead of the database (copy it to every replica).")
    var keyInDirectory = false
}

/// The CA directory and store of one issuer command, with the issuers adopted.
struct IssuerCommandContext {
    let files: CAFiles
    let settings: CASettings
    let passphrase: String?
    let store: any AuthorityStore
    /// PostgreSQL (`--database`): replicas may run on read-only copies of the directory.
    let onDatabase: Bool

    static func open(_ options: IssuerOptions) async throws -> IssuerCommandContext {
        try await open(dir: options.dir, passphraseFile: options.passphraseFile, databaseOptions: options.databaseOptions)
    }

    static func open(dir: String, passphraseFile: String?, databaseOptions: DatabaseOptions) async throws -> IssuerCommandContext {
        umask(0o077)
        let files = CAFiles(directory: dir)
        let settings = try CASettings.load(from: files)
        let passphrase = try readPassphrase(file: passphraseFile)
        if databaseOptions.database == nil { try checkSQLiteIsWritable(files) }
        let store = try await databaseOptions.open(files: files, logger: DatabaseOptions.commandLogger)
        let context = IssuerCommandContext(files: files, settings: settings, passphrase: passphrase, store: store,
                                           onDatabase: databaseOptions.database != nil)
        try await adoptDirectoryIssuers(files: files, store: store)
        return context
    }

    /// The issuer rows, refused (naming the bad row) when their certificates contradict them: a
    /// database writer must not get a planted root reported, activated or exported. No time is
    /// given, so an operator can still rotate away from an expired intermediate.
    func snapshot() async throws -> IssuerSnapshot {
        let snapshot = try await store.issuers()
        try snapshot.checkConsistency(anchorRoot: try X509Certificate(pem: try readFile(files.rootCertificate)))
        return snapshot
    }

    /// The active root's private key: `--root-key`, else the directory's root_key.pem for the
    /// initial root, else issuers/<serial>/root_key.pem where `root prepare` wrote it.
    func rootKey(_ option: String?, snapshot: IssuerSnapshot) throws -> (key: PrivateKey, path: String) {
        try checkPassphrase(snapshot: snapshot)
        guard let root = snapshot.activeRoot else { throw CLIError("the database holds no active root") }
        let initialRoot = try? X509Certificate(pem: readFile(files.rootCertificate))
        let path = option ?? (initialRoot?.der == root.der ? files.rootKey : path(root.serial, "root_key.pem"))
        let pem: String
        do {
            pem = try SmallFile.text(path, limit: OperatorFile.limit)
        } catch .unreadable {
            throw CLIError("--root-key \(path): cannot read it (needed for this step only; keep it offline)")
        } catch {
            throw CLIError("--root-key \(path) \(error)")
        }
        if pem.contains("ENCRYPTED"), (passphrase ?? "").isEmpty {
            throw CLIError("\(path) is encrypted: pass --passphrase-file or set VOUCH_CA_PASSPHRASE")
        }
        do {
            return (try PrivateKey(pem: pem, passphrase: passphrase), path)
        } catch {
            throw CLIError("\(path): \(describe(error))")
        }
    }

    /// `D/issuers/<serial>/<name>`.
    func path(_ serial: String, _ name: String) -> String {
        files.directory.appendingPathComponent("issuers/\(serial)/\(name)").path
    }

    /// Refuses before anything is made when a new intermediate key would have nowhere to go:
    /// on PostgreSQL it is stored encrypted with the CA passphrase, which an unencrypted CA lacks.
    func checkKeyPlacement(keyInDirectory: Bool) throws {
        try checkPassphrase()
        guard onDatabase, !keyInDirectory else { return }
        guard settings.keysEncrypted, !(passphrase ?? "").isEmpty else {
            throw CLIError("""
                the new intermediate's key would go into the database unencrypted (this CA has no passphrase): \
                pass --key-in-directory and copy \(files.directory.path)/issuers/<serial>/key.pem into every replica's CA directory
                """)
        }
    }

    /// On a CA whose keys are encrypted, new keys are encrypted with the CA's passphrase: refuses a
    /// missing one (the key would be written in the clear) and one that does not decrypt the
    /// directory's intermediate key (no server would hold it, so replicas would keep signing with
    /// the retiring intermediate).
    /// With `snapshot`, intermediate keys stored in the database count too (a replica's directory
    /// may hold no key file).
    func checkPassphrase(snapshot: IssuerSnapshot? = nil) throws {
        guard settings.keysEncrypted else { return }
        let keyPath = files.intermediateKey
        guard let passphrase, !passphrase.isEmpty else {
            throw CLIError("this CA's keys are encrypted: pass --passphrase-file or set VOUCH_CA_PASSPHRASE (new keys are encrypted with it)")
        }
        // The directory's intermediate key, else (removed once retired) a later one under issuers/.
        let later = ((try? FileManager.default.contentsOfDirectory(atPath: path("", ""))) ?? []).sorted().map { path($0, "key.pem") }
        for keyPath in [keyPath] + later {
            guard let pem = try? SmallFile.text(keyPath, limit: OperatorFile.limit) else { continue }
            guard (try? PrivateKey(pem: pem, passphrase: passphrase)) != nil else {
                throw CLIError("the passphrase does not decrypt \(keyPath): it is not this CA's")
            }
            return
        }
        for record in snapshot?.issuers ?? [] where record.kind == .intermediate {
            guard let pem = record.keyPEM else { continue }
            guard (try? PrivateKey(pem: pem, passphrase: passphrase)) != nil else {
                throw CLIError("the passphrase does not decrypt the key of intermediate \(record.serial) in the database: it is not this CA's")
            }
            return
        }
    }

    /// Stores a new intermediate's key: encrypted in the database (PostgreSQL), else in
    /// `D/issuers/<serial>/key.pem` (0600, encrypted when the CA's keys are).
    func placeIntermediateKey(keyInDirectory: Bool) -> (IssuerLifecycle.NewIssuer) throws -> IssuerOperations.KeyPlacement {
        { issuer in
            let serial = issuer.certificate.serialHex
            if onDatabase && !keyInDirectory {
                return IssuerOperations.KeyPlacement(keyRef: IssuerRecord.databaseKeyRef, keyPEM: try issuer.key.pkcs8PEM(passphrase: passphrase))
            }
            try writeKey(issuer.key, to: path(serial, "key.pem"))
            return IssuerOperations.KeyPlacement(keyRef: IssuerKeys.fileKeyRef(serial: serial))
        }
    }

    /// A new root's key, for the operator to move offline.
    func placeRootKey(_ issuer: IssuerLifecycle.NewIssuer) throws {
        try writeKey(issuer.key, to: path(issuer.certificate.serialHex, "root_key.pem"))
    }

    private func writeKey(_ key: PrivateKey, to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let encrypted = settings.keysEncrypted ? passphrase : nil
        try AtomicFile.create(Array(try key.pkcs8PEM(passphrase: encrypted).utf8), at: path, mode: 0o600)
    }

    /// Removes what a step wrote for issuers it then failed to record.
    func discard(serials: [String]) {
        for serial in serials { try? FileManager.default.removeItem(atPath: path(serial, "")) }
    }

    var directoryIsWritable: Bool { access(files.directory.path, W_OK) == 0 }

    /// Copies of new issuer certificates under `D/issuers/<serial>/certificate.pem`, for operators.
    func writeCertificateCopies(_ records: [IssuerRecord]) throws {
        guard directoryIsWritable else { return }
        for record in records {
            let path = path(record.serial, "certificate.pem")
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            try AtomicFile.write(try X509Certificate(der: record.der).pem, to: path)
        }
    }

    /// Rewrites `D/bundle.pem` as the roots a client should trust now (every root not retired).
    /// Returns false when the directory is read-only (a mounted Secret): the servers hand the
    /// bundle out themselves.
    @discardableResult
    func exportBundle() async throws -> Bool {
        guard directoryIsWritable else { return false }
        let roots = try await snapshot().issuers.filter { $0.kind == .root && $0.state != .retired }
        try AtomicFile.write(pemBundle(try roots.map { try X509Certificate(der: $0.der) }), to: files.bundle)
        return true
    }

    func operations(adminIDs: [String] = []) -> IssuerOperations {
        IssuerOperations(store: store, now: Date(),
                         adminIDs: Set(adminIDs + [IssuancePolicy.adminID(trustDomain: settings.trustDomain)]))
    }
}

/// SQLite keeps the CA's state in `D/vouch.db`, which the issuer commands write (even reading it
/// takes its write-ahead log): on a read-only directory (a mounted Secret, a read-only volume)
/// they refuse in one line before opening it, instead of SQLite's "attempt to write a readonly database".
private func checkSQLiteIsWritable(_ files: CAFiles) throws {
    let directory = files.directory.path
    let database = FileManager.default.fileExists(atPath: files.database) ? files.database : nil
    guard access(directory, W_OK) != 0 || database.map({ access($0, W_OK) != 0 }) == true else { return }
    throw CLIError("""
        \(directory) is read-only: the issuer commands write \(files.database) (run them where the CA directory \
        is writable, or against the PostgreSQL database with --database)
        """)
}

/// A database no server of this release has opened yet holds no issuer: adopt the directory's
/// pair as `vouch server` does. Refused when the database belongs to another CA: its issuers do not
/// include this directory's root, or (none adopted yet) its newest certificate is not signed by this
/// directory's intermediate, so a mistyped --dir or --database never plants a foreign pair.
func adoptDirectoryIssuers(files: CAFiles, store: any AuthorityStore) async throws {
    let root = try X509Certificate(pem: try readFile(files.rootCertificate))
    let intermediate = try X509Certificate(pem: try readFile(files.intermediateCertificate))
    let mismatch = CLIError("\(files.rootCertificate) is not a root of this database: the directory and the database belong to different CAs")
    if try await store.issuers().issuers.isEmpty,
       let newest = try await store.listCertificates(CertificateQuery(now: Date(), limit: 1)).first,
       !(try X509Certificate(der: newest.der)).isSigned(by: intermediate) {
        throw mismatch
    }
    func record(_ kind: IssuerKind, _ certificate: X509Certificate, _ keyRef: String) -> IssuerRecord {
        IssuerRecord(kind: kind, state: .active, serial: certificate.serialHex, der: certificate.der, notBefore: certificate.notBefore,
                     notAfter: certificate.notAfter, keyRef: keyRef, createdAt: Date())
    }
    let snapshot = try await store.adoptInitialIssuers(root: record(.root, root, IssuerRecord.offlineKeyRef),
                                                       intermediate: record(.intermediate, intermediate, IssuerRecord.initialKeyRef))
    guard snapshot.issuers.contains(where: { $0.der == root.der }) else { throw mismatch }
}

private func readFile(_ path: String) throws -> String {
    try OperatorFile.text(path, what: "certificate file", limit: 1 << 20)
}

/// `CN=…` of a stored issuer certificate.
func commonName(_ record: IssuerRecord?) -> String {
    guard let record, let name = try? X509Certificate(der: record.der).commonName else { return "?" }
    return "CN=\(name)"
}
