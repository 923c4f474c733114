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
    @Option(help: ArgumentHelp("The active root's key, a file or a pkcs11: URI (default: DIR/root_key.pem or ca.json's root_key, or where `root prepare` put it).",
                               valueName: "file"))
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
    /// The PKCS#11 tokens of `--pkcs11-*` (nil for commands that take none).
    let tokens: CommandTokens?

    /// The token of `--pkcs11-token` the command logged in to: new intermediate keys are made there.
    var token: PKCS11Token? { tokens?.token }

    /// What opens the intermediates' keys.
    var keyAccess: KeyAccess {
        KeyAccess(files: files, passphrase: passphrase, token: token, initialKeyRef: settings.intermediateKey)
    }

    static func open(_ options: IssuerOptions, pkcs11: PKCS11Options? = nil) async throws -> IssuerCommandContext {
        try await open(dir: options.dir, passphraseFile: options.passphraseFile, databaseOptions: options.databaseOptions, pkcs11: pkcs11)
    }

    static func open(dir: String, passphraseFile: String?, databaseOptions: DatabaseOptions,
                     pkcs11: PKCS11Options? = nil) async throws -> IssuerCommandContext {
        umask(0o077)
        let files = CAFiles(directory: dir)
        let settings = try CASettings.load(from: files)
        let passphrase = try readPassphrase(file: passphraseFile)
        if databaseOptions.database == nil { try checkSQLiteIsWritable(files) }
        // Before the store: a token that does not open changes nothing.
        let tokens = try pkcs11.map { try CommandTokens(options: $0, settings: settings) }
        let store = try await databaseOptions.open(files: files, logger: DatabaseOptions.commandLogger)
        let context = IssuerCommandContext(files: files, settings: settings, passphrase: passphrase, store: store,
                                           onDatabase: databaseOptions.database != nil, tokens: tokens)
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

    /// The active root's private key: `--root-key` (a file or a `pkcs11:` URI), else for the initial
    /// root ca.json's `root_key` (a token key) or the directory's root_key.pem, else
    /// issuers/<serial>/root_key.uri or root_key.pem where `root prepare` put it. `path` is the
    /// URI for a token key.
    func rootKey(_ option: String?, snapshot: IssuerSnapshot) throws -> (key: PrivateKey, path: String) {
        try checkPassphrase(snapshot: snapshot)
        guard let root = snapshot.activeRoot else { throw CLIError("the database holds no active root") }
        let initialRoot = try? X509Certificate(pem: readFile(files.rootCertificate))
        if let uri = try rootKeyReference(option, root: root, initialRoot: initialRoot) {
            return (try tokenRootKey(uri), uri)
        }
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

    /// The `pkcs11:` URI of the active root's key, when it is in a token.
    private func rootKeyReference(_ option: String?, root: IssuerRecord, initialRoot: X509Certificate?) throws -> String? {
        if let option { return TokenKeyReference.isReference(option) ? option : nil }
        if initialRoot?.der == root.der { return settings.rootKey.flatMap { TokenKeyReference.isReference($0) ? $0 : nil } }
        let uriFile = path(root.serial, "root_key.uri")
        guard FileManager.default.fileExists(atPath: uriFile) else { return nil }
        return try OperatorFile.text(uriFile, what: "root key reference", limit: 4096).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A root key in a token: found in the root token (or the intermediate keys' token).
    private func tokenRootKey(_ uri: String) throws -> PrivateKey {
        let reference: TokenKeyReference
        do {
            reference = try TokenKeyReference(parsing: uri)
        } catch {
            throw CLIError("--root-key \(uri): \(describe(error))")
        }
        guard let tokens else {
            throw CLIError("the root key is in PKCS#11 token \(reference.token.debugDescription): this command cannot open a token")
        }
        do {
            return try tokens.rootToken(for: reference).key(reference)
        } catch let error as CryptoError {
            throw CLIError("the root key \(uri): \(error.message)")
        }
    }

    /// Makes new keys in the tokens when the command logged in to one (each recorded in `made`,
    /// for `discard` should the step fail), else by OpenSSL for a key file or the database.
    /// - Parameter currentRootKey: the path or URI of the active root's key (a new root key goes
    ///   into the same root token).
    func makeKey(currentRootKey: String, made: MadeTokenKeys) -> IssuerLifecycle.MakeKey {
        { kind in
            let token = kind == .root
                ? try tokens?.tokenForNewRoot(current: try? TokenKeyReference(parsing: currentRootKey))
                : self.token
            guard let token else { return try IssuerLifecycle.opensslKey(kind) }
            let new = try token.generateKey(.p256, label: CAKeyStore.newLabel(kind))
            made.references.append(new.reference)
            return IssuerLifecycle.NewKey(key: new.key, tokenReference: new.reference)
        }
    }

    /// `D/issuers/<serial>/<name>`.
    func path(_ serial: String, _ name: String) -> String {
        files.directory.appendingPathComponent("issuers/\(serial)/\(name)").path
    }

    /// Refuses before anything is made when a new intermediate key would have nowhere to go:
    /// on PostgreSQL it is stored encrypted with the CA passphrase, which an unencrypted CA lacks.
    func checkKeyPlacement(keyInDirectory: Bool) throws {
        if let token {
            guard !keyInDirectory else {
                throw CLIError("--key-in-directory: the new intermediate's key is made in PKCS#11 token \(token.label.debugDescription) and never leaves it")
            }
            return
        }
        if settings.keysInToken {
            throw CLIError("""
                this CA keeps its keys in PKCS#11 token \((settings.pkcs11Token ?? "?").debugDescription): pass --pkcs11-pin-file \
                (the new intermediate's key is made there)
                """)
        }
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
            // The row names the token key; no key material is stored anywhere.
            if let reference = issuer.tokenReference { return .token(reference) }
            if onDatabase && !keyInDirectory {
                return IssuerOperations.KeyPlacement(keyRef: IssuerRecord.databaseKeyRef, keyPEM: try issuer.key.pkcs8PEM(passphrase: passphrase))
            }
            try writeKey(issuer.key, to: path(serial, "key.pem"))
            return IssuerOperations.KeyPlacement(keyRef: IssuerKeys.fileKeyRef(serial: serial))
        }
    }

    /// A new root's key, for the operator to move offline; for a key in a token, its URI in
    /// `D/issuers/<serial>/root_key.uri` (not secret: the token's PIN is needed to use it).
    func placeRootKey(_ issuer: IssuerLifecycle.NewIssuer) throws {
        if let reference = issuer.tokenReference {
            let uriFile = path(issuer.certificate.serialHex, "root_key.uri")
            try FileManager.default.createDirectory(atPath: (uriFile as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try AtomicFile.create(Array((reference.description + "\n").utf8), at: uriFile, mode: 0o600)
            return
        }
        try writeKey(issuer.key, to: path(issuer.certificate.serialHex, "root_key.pem"))
    }

    private func writeKey(_ key: PrivateKey, to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let encrypted = settings.keysEncrypted ? passphrase : nil
        try AtomicFile.create(Array(try key.pkcs8PEM(passphrase: encrypted).utf8), at: path, mode: 0o600)
    }

    /// Removes what a step wrote for issuers it then failed to record, and the token keys it made.
    func discard(serials: [String], made: MadeTokenKeys? = nil) {
        for serial in serials { try? FileManager.default.removeItem(atPath: path(serial, "")) }
        if let made { tokens?.destroy(made.references) }
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

/// The token keys a step made, so a failed step can destroy them.
final class MadeTokenKeys {
    var references: [TokenKeyReference] = []
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
