import ArgumentParser
import Foundation
import VouchAuthority
import VouchCrypto

/// `vouch ca intermediate rotate|revoke`.
struct CAIntermediateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "intermediate", abstract: "Rotate the CA's signing intermediate; revoke one that no longer signs.",
        subcommands: [CAIntermediateRotate.self, CAIntermediateRevoke.self])
}

struct CAIntermediateRotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Make a new intermediate under the active root; it signs from now on, the previous one is retiring.",
        discussion: """
            Running servers switch within 2 s. Certificates of the previous intermediate keep renewing (from the new one), \
            revoking and appearing in its CRL until they expire. Needs the root key for this step only.
            """)

    @OptionGroup var options: IssuerOptions

    @OptionGroup var newIssuer: NewIssuerOptions

    @OptionGroup var pkcs11: PKCS11Options

    func run() async throws {
        try await runReportingErrors {
            let context = try await IssuerCommandContext.open(options, pkcs11: pkcs11)
            try context.checkKeyPlacement(keyInDirectory: newIssuer.keyInDirectory)
            let operations = context.operations()
            let (key, keyPath) = try context.rootKey(newIssuer.rootKey, snapshot: try await context.snapshot())
            var written: [String] = []
            let made = MadeTokenKeys()
            let rotation: IssuerOperations.Rotation
            do {
                let place = context.placeIntermediateKey(keyInDirectory: newIssuer.keyInDirectory)
                rotation = try await operations.rotateIntermediate(rootKey: key, rootKeyPath: keyPath,
                                                                   makeKey: context.makeKey(currentRootKey: keyPath, made: made)) { issuer in
                    written.append(issuer.certificate.serialHex)
                    return try place(issuer)
                }
            } catch {
                context.discard(serials: written, made: made)
                throw error
            }
            try context.writeCertificateCopies([rotation.new])
            let server = await ServerCertificateFile.reissueAfterSwitch(context: context, command: "ca intermediate rotate")
            let previous = try await operations.usage(of: rotation.previous, in: try await context.snapshot())
            let inToken = TokenKeyReference.isReference(rotation.new.keyRef)
            let keyInFile = rotation.new.keyRef != IssuerRecord.databaseKeyRef && !inToken
            let keyFile = context.path(rotation.new.serial, "key.pem")
            if options.json {
                try printJSON(RotationJSON(
                    serial: rotation.new.serial, not_after: iso8601(rotation.new.notAfter), generation: rotation.generation,
                    key: inToken ? rotation.new.keyRef : keyInFile ? keyFile : "database",
                    previous: .init(serial: rotation.previous.serial, state: IssuerState.retiring.rawValue, live: previous.live,
                                    latest_not_after: previous.latestNotAfter.map(iso8601)),
                    retired: rotation.retired.map(\.serial),
                    server_cert: ServerCertificateFile.JSON(server.outcome, dir: context.files.directory.path)))
                return
            }
            let last = previous.latestNotAfter.map { ", the last expires \(iso8601($0))" } ?? ""
            print("rotated the intermediate: \(rotation.new.serial) now signs (until \(iso8601(rotation.new.notAfter))); "
                + "\(rotation.previous.serial) is retiring: \(counted(previous.live, "live certificate"))\(last); they renew from the new one")
            if inToken {
                print("key: \(rotation.new.keyRef) (in the token, never extractable; servers logged in to it switch within 2 s)")
            } else if !keyInFile {
                print("key: stored encrypted in the database (replicas switch within 2 s)")
            } else if context.onDatabase {
                print("key: \(keyFile) (copy it into every replica's CA directory)")
            } else {
                print("key: \(keyFile) (the server switches within 2 s)")
            }
            for retired in rotation.retired { print("retired intermediate \(retired.serial): no unexpired certificate left") }
            if let line = server.line { print(line) }
        }
    }

    struct RotationJSON: Encodable {
        struct Previous: Encodable {
            let serial: String
            let state: String
            let live: Int
            let latest_not_after: String?
        }
        let serial: String
        let not_after: String
        let generation: Int64
        let key: String
        let previous: Previous
        let retired: [String]
        let server_cert: ServerCertificateFile.JSON?
    }
}

/// `vouch ca root prepare|status|activate|retire`.
struct CARootCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "root", abstract: "Roll the CA's root over in stages: prepare, status, activate, retire; sign a root's CRL.",
        subcommands: [CARootPrepare.self, CARootStatus.self, CARootActivate.self, CARootRetire.self, CARootCRL.self])
}

/// Admin IDs besides the init admin: their certificates are the CA's own, not agents'.
struct AdminIDOptions: ParsableArguments {
    @Option(name: .customLong("admin-id"), help: "An admin SPIFFE ID the server lists with --admin-id (repeatable): its certificates are not agents'.")
    var adminIDs: [String] = []
}

struct CARootPrepare: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Make a new root and intermediate, pending: in the trust bundle, not signing yet.",
        discussion: "Agents receive the new root with the old root's endorsement while they run. Needs the old root key for this step only.")

    @OptionGroup var options: IssuerOptions

    @OptionGroup var newIssuer: NewIssuerOptions

    @OptionGroup var pkcs11: PKCS11Options

    func run() async throws {
        try await runReportingErrors {
            let context = try await IssuerCommandContext.open(options, pkcs11: pkcs11)
            try context.checkKeyPlacement(keyInDirectory: newIssuer.keyInDirectory)
            let (key, keyPath) = try context.rootKey(newIssuer.rootKey, snapshot: try await context.snapshot())
            var written: [String] = []
            let made = MadeTokenKeys()
            let prepared: IssuerOperations.Preparation
            do {
                let place = context.placeIntermediateKey(keyInDirectory: newIssuer.keyInDirectory)
                prepared = try await context.operations().prepareRoot(
                    rootKey: key, rootKeyPath: keyPath, makeKey: context.makeKey(currentRootKey: keyPath, made: made),
                    placeRootKey: { root in
                        written.append(root.certificate.serialHex)
                        try context.placeRootKey(root)
                    },
                    placeIntermediateKey: { issuer in
                        written.append(issuer.certificate.serialHex)
                        return try place(issuer)
                    })
            } catch {
                context.discard(serials: written, made: made)
                throw error
            }
            try context.writeCertificateCopies([prepared.root, prepared.intermediate, prepared.cross, prepared.endorsement])
            let exported = try await context.exportBundle()
            let rootKeyInToken = prepared.made.root.tokenReference
            let rootKeyFile = context.path(prepared.root.serial, rootKeyInToken == nil ? "root_key.pem" : "root_key.uri")
            if options.json {
                try printJSON(PreparationJSON(
                    generation: prepared.generation, root: prepared.root.serial, intermediate: prepared.intermediate.serial,
                    cross: prepared.cross.serial, endorsement: prepared.endorsement.serial, root_key: rootKeyFile,
                    bundle: exported ? context.files.bundle : nil))
                return
            }
            print("""
                prepared a root rollover (generation \(prepared.generation)), all pending:
                  new root:          \(prepared.root.serial) (\(commonName(prepared.root)), until \(iso8601(prepared.root.notAfter)))
                  new intermediate:  \(prepared.intermediate.serial)
                  cross certificate: \(prepared.cross.serial) (the new intermediate signed by the old root)
                  endorsement:       \(prepared.endorsement.serial) (the new root signed by the old root)
                """)
            print(exported ? "bundle: \(context.files.bundle) holds both roots"
                : "bundle: \(context.files.directory.path) is read-only; the servers hand out both roots")
            if let rootKeyInToken {
                print("root key: \(rootKeyInToken) (in the token; \(rootKeyFile) names it)")
            } else {
                print("move \(rootKeyFile) offline")
            }
            print("next: vouch ca root status --dir \(options.dir)")
        }
    }

    struct PreparationJSON: Encodable {
        let generation: Int64
        let root: String
        let intermediate: String
        let cross: String
        let endorsement: String
        let root_key: String
        let bundle: String?
    }
}

struct CARootStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the rollover's stage, which agents hold the new root, what still depends on the old one, and whether the next stage is safe.")

    @OptionGroup var options: IssuerOptions
    @OptionGroup var admins: AdminIDOptions

    func run() async throws {
        try await runReportingErrors {
            let context = try await IssuerCommandContext.open(options)
            let operations = context.operations(adminIDs: admins.adminIDs)
            let status = try await operations.status()
            let snapshot = try await context.snapshot()
            let expiring = try await operations.expiringAdminCertificates()
            if options.json {
                try printJSON(RolloverStatusJSON(status, snapshot: snapshot, expiringAdmins: expiring))
            } else {
                printStatus(status, snapshot: snapshot, context: context)
                for admin in expiring {
                    print("warning: admin certificate \(admin.serial) of \(admin.spiffeID) expires at \(iso8601(admin.notAfter)): "
                        + "renew it with vouch ca admin-cert")
                }
            }
        }
    }

    private func printStatus(_ status: RolloverStatus, snapshot: IssuerSnapshot, context: IssuerCommandContext) {
        let counts = status.counts
        print("root rollover: \(status.stage == .none ? "none" : status.stage.rawValue) (generation \(status.generation))")
        if let old = status.oldRoot, let new = status.newRoot {
            print("  old root \(old.serial) (\(commonName(old))) \(old.state.rawValue)")
            print("  new root \(new.serial) (\(commonName(new))) \(new.state.rawValue)")
        } else if let root = status.newRoot {
            print("  root \(root.serial) (\(commonName(root))) active")
        }
        if let signing = snapshot.activeIntermediate {
            let under = signing.parentID == status.oldRoot?.id ? "old root" : status.stage == .none ? "root" : "new root"
            print("  signing: intermediate \(signing.serial) (\(under))")
        }
        for retiring in snapshot.issuers where retiring.kind == .intermediate && retiring.state == .retiring {
            print("  retiring: intermediate \(retiring.serial) (until its certificates expire)")
        }
        let (crls, dropped) = snapshot.servedRootCRLs()
        for crl in crls { print("  root CRL of \(crl.root): number \(crl.number), next update \(iso8601(crl.nextUpdate))") }
        for line in dropped { print("  warning: \(line)") }
        for root in snapshot.rootsWithoutCRL { print("  warning: root \(root.serial) has no CRL: run vouch ca root crl --dir \(options.dir)") }
        if status.stage != .none {
            let names = counts.unconfirmedSample.map { "\($0.spiffeID) (serial \($0.serial))" }
            let more = counts.unconfirmedAgents > names.count ? ", …" : ""
            print("  agents: \(counts.liveAgents) live, \(counts.confirmedAgents) hold the new root"
                + (names.isEmpty ? "" : "; not yet: " + names.joined(separator: ", ") + more))
            let last = counts.rootLatestNotAfter.map { ", the last expires \(iso8601($0))" } ?? ""
            print("  certificates chaining only to the old root: \(counts.rootCertificates) live\(last)")
            if counts.ownCertificates > 0 {
                print("  the CA's own certificates under the old root: \(counts.ownCertificates): "
                    + ownCertificateAdvice(counts.ownSample, context: context))
            }
        }
        let verdict = status.next.safe ? "safe" : "not yet"
        let at = status.next.safeAt.map { " (safe at \(iso8601($0)))" } ?? ""
        print("next: \(status.next.command.replacingOccurrences(of: "vouch ca root ", with: "")): \(verdict): \(status.next.reason)\(at)")
    }
}

/// `root status --json`: one object.
struct RolloverStatusJSON: Encodable {
    struct Issuer: Encodable {
        let id: Int64
        let kind: String
        let state: String
        let serial: String
        let subject: String
        let not_after: String
        let parent_id: Int64?
    }
    struct Certificate: Encodable {
        let spiffe_id: String
        let serial: String
        let not_after: String
        init(_ certificate: RolloverCertificate) {
            (spiffe_id, serial, not_after) = (certificate.spiffeID, certificate.serial, iso8601(certificate.notAfter))
        }
    }
    struct Agents: Encodable {
        let live: Int
        let confirmed: Int
        let unconfirmed: [Certificate]
        let unconfirmed_count: Int
    }
    struct Certificates: Encodable {
        let live: Int
        let latest_not_after: String?
        let sample: [Certificate]
    }
    struct Next: Encodable {
        let command: String
        let safe: Bool
        let reason: String
        let safe_at: String?
    }
    struct RootCRLEntry: Encodable {
        let serial: String
        let number: Int64
        let next_update: String
    }
    let stage: String
    let generation: Int64
    let old_root: String?
    let new_root: String?
    let issuers: [Issuer]
    let agents: Agents
    let old_root_certificates: Certificates
    let own_certificates: Certificates
    /// Live admin certificates expiring within 30 days.
    let expiring_admin_certificates: [Certificate]
    /// The served CRL of each root that is not retired (`vouch ca root crl` signs the next).
    let root_crls: [RootCRLEntry]
    let next: Next

    init(_ status: RolloverStatus, snapshot: IssuerSnapshot, expiringAdmins: [RolloverCertificate]) {
        let counts = status.counts
        stage = status.stage.rawValue
        generation = status.generation
        old_root = status.oldRoot?.serial
        new_root = status.newRoot?.serial
        issuers = snapshot.issuers.map {
            Issuer(id: $0.id, kind: $0.kind.rawValue, state: $0.state.rawValue, serial: $0.serial, subject: commonName($0),
                   not_after: iso8601($0.notAfter), parent_id: $0.parentID)
        }
        agents = Agents(live: counts.liveAgents, confirmed: counts.confirmedAgents,
                        unconfirmed: counts.unconfirmedSample.map(Certificate.init), unconfirmed_count: counts.unconfirmedAgents)
        old_root_certificates = Certificates(live: counts.rootCertificates, latest_not_after: counts.rootLatestNotAfter.map(iso8601),
                                             sample: counts.rootSample.map(Certificate.init))
        own_certificates = Certificates(live: counts.ownCertificates, latest_not_after: counts.ownLatestNotAfter.map(iso8601),
                                        sample: counts.ownSample.map(Certificate.init))
        expiring_admin_certificates = expiringAdmins.map(Certificate.init)
        root_crls = snapshot.servedRootCRLs().crls.map { RootCRLEntry(serial: $0.root, number: $0.number, next_update: iso8601($0.nextUpdate)) }
        next = Next(command: status.next.command, safe: status.next.safe, reason: status.next.reason,
                    safe_at: status.next.safeAt.map(iso8601))
    }
}

struct CARootActivate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "activate",
        abstract: "The new root's intermediate signs from now on; the old root and its intermediates are retiring.",
        discussion: "Refused until every live agent holds the new root, unless --force.")

    @OptionGroup var options: IssuerOptions
    @OptionGroup var admins: AdminIDOptions

    @Flag(help: "Activate even though agents have not confirmed the new bundle.")
    var force = false

    /// server.pem is reissued from the new intermediate: its key may be in a token.
    @OptionGroup var pkcs11: PKCS11Options

    func run() async throws {
        try await runReportingErrors {
            let context = try await IssuerCommandContext.open(options, pkcs11: pkcs11)
            let done = try await context.operations(adminIDs: admins.adminIDs).activateRoot(force: force)
            let snapshot = try await context.snapshot()
            let server = await ServerCertificateFile.reissueAfterSwitch(context: context, command: "ca root activate")
            if options.json {
                try printJSON(TransitionJSON(done, snapshot: snapshot,
                                             serverCertificate: ServerCertificateFile.JSON(server.outcome, dir: context.files.directory.path)))
                return
            }
            print("activated root \(done.status.newRoot?.serial ?? "?"): intermediate \(snapshot.activeIntermediate?.serial ?? "?") "
                + "signs from now on (servers switch within 2 s); root \(done.status.oldRoot?.serial ?? "?") is retiring")
            if !done.status.next.safe { print("forced: \(done.status.next.reason)") }
            if let line = server.line { print(line) }
            print("next: vouch ca root status --dir \(options.dir), then vouch ca root retire when it says safe")
        }
    }
}

struct CARootRetire: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retire",
        abstract: "The old root, its intermediates and the cross certificate leave the trust bundle.",
        discussion: "Refused while live certificates chain only to the old root or agents have not confirmed, unless --force.")

    @OptionGroup var options: IssuerOptions
    @OptionGroup var admins: AdminIDOptions

    @Flag(help: "Retire even though certificates or agents still depend on the old root.")
    var force = false

    func run() async throws {
        try await runReportingErrors {
            let context = try await IssuerCommandContext.open(options)
            let done = try await context.operations(adminIDs: admins.adminIDs).retireRoot(force: force)
            let exported = try await context.exportBundle()
            let snapshot = try await context.snapshot()
            if options.json {
                try printJSON(TransitionJSON(done, snapshot: snapshot))
                return
            }
            print("retired root \(done.status.oldRoot?.serial ?? "?") with its intermediates and cross certificate; "
                + (exported ? "\(context.files.bundle) holds root \(snapshot.activeRoot?.serial ?? "?")" : "servers hand out the new root alone"))
            if !done.status.next.safe { print("forced: \(done.status.next.reason)") }
            let own = done.status.counts
            if own.ownCertificates > 0 {
                print("\(counted(own.ownCertificates, "certificate")) of the CA itself still \(own.ownCertificates == 1 ? "chains" : "chain") to the old root: "
                    + ownCertificateAdvice(own.ownSample, context: context))
            }
            print("the old root's key can now be destroyed")
        }
    }
}

/// `root activate|retire --json`.
struct TransitionJSON: Encodable {
    struct Change: Encodable {
        let serial: String
        let kind: String
        let state: String
    }
    let generation: Int64
    let forced: Bool
    let reason: String
    let changed: [Change]
    /// What became of server.pem (activate only).
    let server_cert: ServerCertificateFile.JSON?

    init(_ transition: IssuerOperations.Transition, snapshot: IssuerSnapshot, serverCertificate: ServerCertificateFile.JSON? = nil) {
        server_cert = serverCertificate
        generation = transition.generation
        forced = !transition.status.next.safe
        reason = transition.status.next.reason
        changed = transition.changed.compactMap { update in
            snapshot.issuer(id: update.id).map { Change(serial: $0.serial, kind: $0.kind.rawValue, state: update.state.rawValue) }
        }
    }
}

/// `1 live certificate`, `2 live certificates`.
func counted(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }

/// RFC 3339 in UTC.
func iso8601(_ date: Date) -> String { date.formatted(.iso8601) }
