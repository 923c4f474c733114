import ArgumentParser
import Foundation
import VouchAPI
import VouchAuthority
import VouchCrypto
import VouchFiles

/// D/server.pem and server_key.pem: the certificate a server presents while it cannot issue
/// itself a listener certificate (its database down at start). `ca init` writes it under the
/// initial intermediate; the commands that change the signing intermediate (`ca intermediate
/// rotate`, `ca root activate`) and `ca server-cert` reissue it from the active one, so it never
/// outlives its root's place in the bundle and its record never blocks a root's retirement.
enum ServerCertificateFile {
    /// A year, as `ca init` gives it (capped at the intermediate's end).
    static let lifetime: TimeInterval = 365 * 86400

    enum Outcome {
        case reissued(serial: String, notAfter: Date, issuer: String, replaces: String?, directory: String)
        /// The directory cannot be written: the file still holds `serial`.
        case readOnly(serial: String?)
        /// No server.pem in the CA directory: nothing to reissue.
        case missing
        case failed(String)
    }

    /// A new key and certificate from the active intermediate, with the names of D/server.pem,
    /// written to `out` (default: the CA directory) as one change; recorded first as the renewal
    /// of the one it replaces, so that one stops counting as live.
    static func reissue(context: IssuerCommandContext, out: String? = nil, command: String = "ca server-cert",
                        now: Date = Date()) async throws -> Outcome {
        let files = context.files
        guard FileManager.default.fileExists(atPath: files.serverCertificate) else { return .missing }
        let held = try X509Certificate(pem: try OperatorFile.text(files.serverCertificate, what: "certificate file", limit: 1 << 20))
        let directory = out ?? files.directory.path
        guard access(directory, W_OK) == 0 else { return .readOnly(serial: held.serialHex) }
        let issuer = try await AdminCertificateIssuer(context: context)
        let names = held.subjectAltNames
        let serverID = IssuancePolicy.serverID(trustDomain: context.settings.trustDomain)
        let issued = try LocalIssuance.issue(signer: issuer.signer, spiffeID: serverID, dnsNames: names.dnsNames,
                                             ipAddresses: names.ipAddresses, lifetime: lifetime, now: now)
        var record = issued.record
        record.issuerID = issuer.record.id
        // The file in --out is replaced when there is one; D's otherwise (a copy for read-only replicas).
        let certificatePath = directory + "/server.pem", keyPath = directory + "/server_key.pem"
        let replaced = out == nil ? held
            : (try? X509Certificate(pem: OperatorFile.text(certificatePath, what: "certificate file", limit: 1 << 20))) ?? held
        try await LocalCertificateRecord.record(&record, replacing: replaced, store: context.store, label: "\(serverID) (server.pem)",
                                                command: command)
        try AtomicFile.writeAll([(keyPath, Array(try issued.key.pkcs8PEM().utf8), 0o600),
                                 (certificatePath, Array((issued.certificate.pem + issuer.chainPEM).utf8), 0o644)])
        return .reissued(serial: record.serial, notAfter: record.notAfter, issuer: issuer.record.serial,
                         replaces: replaced.serialHex, directory: directory)
    }

    /// After a step that changed the signing intermediate: reissue, never failing the step (it is
    /// recorded already); returns the line to print.
    static func reissueAfterSwitch(context: IssuerCommandContext, command: String) async -> (outcome: Outcome, line: String?) {
        let outcome: Outcome
        do {
            outcome = try await reissue(context: context, command: command)
        } catch {
            outcome = .failed(describe(error))
        }
        return (outcome, line(outcome, dir: context.files.directory.path))
    }

    static func line(_ outcome: Outcome, dir: String) -> String? {
        switch outcome {
        case .reissued(let serial, let notAfter, let issuer, let replaces, let directory):
            return "server.pem: reissued \(serial) from intermediate \(issuer) until \(iso8601(notAfter))"
                + (replaces.map { " (replaces \($0))" } ?? "") + (directory == dir ? "" : " in \(directory)")
        case .readOnly(let serial):
            return "server.pem: \(dir) is read-only, so server.pem\(serial.map { " (\($0))" } ?? "") still comes from the previous "
                + "intermediate (servers issue their own listener certificates; it is their fallback): run vouch ca server-cert --dir \(dir) "
                + "--out DIR and copy DIR/server.pem and DIR/server_key.pem into every replica's CA directory"
        case .missing:
            return nil
        case .failed(let reason):
            return "warning: cannot reissue server.pem (\(reason)): run vouch ca server-cert --dir \(dir)"
        }
    }

    /// `server_cert` in `--json`.
    struct JSON: Encodable {
        let serial: String?
        let not_after: String?
        let path: String?
        let problem: String?

        init?(_ outcome: Outcome, dir: String) {
            switch outcome {
            case .reissued(let serial, let notAfter, _, _, let directory):
                (self.serial, not_after, path, problem) = (serial, iso8601(notAfter), directory + "/server.pem", nil)
            case .missing:
                return nil
            case .readOnly, .failed:
                (serial, not_after, path, problem) = (nil, nil, nil, ServerCertificateFile.line(outcome, dir: dir))
            }
        }
    }
}

/// Records a certificate issued on the CA host to replace the one a file holds: as the renewal
/// of it when this database recorded it (it is superseded, so it stops counting as live), else
/// as a new certificate (a file made before the CA moved to this database has no lineage).
enum LocalCertificateRecord {
    static func record(_ record: inout CertificateRecord, replacing previous: X509Certificate, store: any AuthorityStore,
                       label: String, command: String) async throws {
        let time = record.issuedAt, previousSerial = previous.serialHex
        if let recorded = try await store.certificate(serial: previousSerial) {
            record.renewedFrom = previousSerial
            _ = try await store.recordRenewal(
                certificate: record, previousSerial: previousSerial, replacing: recorded.supersededBy, at: time, budget: nil,
                audit: [AuditEntry(time: time, actor: "local", action: .issue, subject: record.serial, peer: "local",
                                   detail: "\(label) renewed from \(previousSerial) (\(command))")])
        } else {
            try await store.insertCertificate(record, audit: AuditEntry(
                time: time, actor: "local", action: .issue, subject: record.serial, peer: "local",
                detail: "\(label) replacing \(previousSerial), which this database never recorded (\(command))"))
        }
    }
}

/// `vouch ca server-cert`: server.pem and server_key.pem from the active intermediate.
struct CAServerCert: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server-cert",
        abstract: "Reissue server.pem and server_key.pem (the servers' fallback listener certificate) from the intermediate that signs now.",
        discussion: """
            `ca intermediate rotate` and `ca root activate` do this themselves when the CA directory is writable. With a \
            read-only directory, write the pair to --out and copy it into every replica's CA directory. The names are those \
            of DIR/server.pem; the certificate replaced is recorded as renewed.
            """)

    @Option(help: "CA directory made by `vouch ca init`.")
    var dir: String = "./vouch-ca"

    @Option(help: "Directory to write server.pem and server_key.pem into (default: the CA directory).")
    var out: String?

    @Option(help: "Passphrase file for encrypted CA keys (or set VOUCH_CA_PASSPHRASE).")
    var passphraseFile: String?

    @OptionGroup var pkcs11: PKCS11Options

    @OptionGroup var databaseOptions: DatabaseOptions

    func run() async throws {
        try await runReportingErrors {
            let context = try await IssuerCommandContext.open(dir: dir, passphraseFile: passphraseFile, databaseOptions: databaseOptions,
                                                              pkcs11: pkcs11)
            let outcome = try await ServerCertificateFile.reissue(context: context, out: out)
            switch outcome {
            case .reissued:
                print(ServerCertificateFile.line(outcome, dir: context.files.directory.path) ?? "")
            case .readOnly:
                throw CLIError("\(out ?? context.files.directory.path) is not writable: choose a writable --out")
            case .missing:
                throw CLIError("\(context.files.serverCertificate) does not exist: its names are the ones to keep")
            case .failed(let reason):
                throw CLIError(reason)
            }
        }
    }
}
