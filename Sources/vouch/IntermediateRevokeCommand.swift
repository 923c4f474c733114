import ArgumentParser
import Foundation
import VouchAuthority
import VouchCrypto

/// `vouch ca intermediate revoke SERIAL --root-key F --reason R`.
struct CAIntermediateRevoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke an intermediate that no longer signs: its root's CRL lists it, and it leaves the pools and the trust bundle.",
        discussion: """
            Refused for the signing intermediate: run vouch ca intermediate rotate first. Its live certificates can no longer \
            renew and need new tokens. Needs the key of the root that signed it for this step only. Refused while DIR/admin.pem \
            was issued by it (renew it with vouch ca admin-cert first) unless --force; warns when DIR/server.pem was.
            """)

    @Argument(help: "The intermediate's serial (hex).")
    var serial: String

    @OptionGroup var options: IssuerOptions

    @Option(help: ArgumentHelp("The key of the root that signed it (default: DIR/root_key.pem, or where `root prepare` put the active root's).",
                               valueName: "file"))
    var rootKey: String?

    @OptionGroup var pkcs11: PKCS11Options

    @Option(help: ArgumentHelp("keyCompromise, cessationOfOperation or superseded.", valueName: "reason"))
    var reason: String

    @Flag(help: "Revoke although DIR/admin.pem was issued by this intermediate (servers refuse it from then on).")
    var force = false

    func run() async throws {
        try await runReportingErrors {
            guard let reason = RevocationReason(text: reason), IssuerOperations.intermediateRevocationReasons.contains(reason) else {
                throw CLIError("--reason \(reason) is not one of keyCompromise, cessationOfOperation, superseded")
            }
            let context = try await IssuerCommandContext.open(options, pkcs11: pkcs11)
            let snapshot = try await context.snapshot()
            // Before anything changes: revoking what admin.pem chains through would lock the operator out.
            let own = IntermediateRevokeOwnCertificates(serial: serial, snapshot: snapshot, files: context.files)
            if !force, let refusal = own?.adminRefusal { throw CLIError(refusal) }
            let (key, keyPath) = try context.rootKey(rootKey, snapshot: snapshot)
            let revoked = try await context.operations().revokeIntermediate(serial: serial, reason: reason, rootKey: key, rootKeyPath: keyPath)
            let warnings = own?.warnings ?? []
            if options.json {
                for line in warnings { FileHandle.standardError.write(Data((line + "\n").utf8)) }
                try printJSON(RevocationJSON(serial: revoked.intermediate.serial, reason: reason.description, root: revoked.root.serial,
                                             crl_number: revoked.crl.number, next_update: iso8601(revoked.crl.nextUpdate),
                                             live_certificates: revoked.liveCertificates, generation: revoked.generation))
                return
            }
            print("revoked intermediate \(revoked.intermediate.serial) (\(reason)): root CRL of \(revoked.root.serial) number "
                + "\(revoked.crl.number), next update \(iso8601(revoked.crl.nextUpdate)); servers drop it within 2 s")
            if revoked.liveCertificates > 0 {
                print("\(counted(revoked.liveCertificates, "live certificate")) of it can no longer renew: give their agents new tokens")
            }
            for line in warnings { print(line) }
        }
    }

    struct RevocationJSON: Encodable {
        let serial: String
        let reason: String
        let root: String
        let crl_number: Int64
        let next_update: String
        let live_certificates: Int
        let generation: Int64
    }
}
