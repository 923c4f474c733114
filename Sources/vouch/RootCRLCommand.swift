import ArgumentParser
import Foundation
import VouchAuthority
import VouchCrypto

/// `vouch ca root crl`: signs the next CRL of a root with its offline key. Servers that check CRLs
/// for the whole chain (nginx, HAProxy, PostgreSQL) refuse every client once it expires, so this
/// runs again before its nextUpdate (the servers warn from 30 days before).
struct CARootCRL: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crl",
        abstract: "Sign the next CRL of a root with its key (run it again before the printed next update).",
        discussion: """
            The root is the one --root-key belongs to (any root that is not retired). Running servers serve it within 2 s \
            at /crl/<root serial>, in /crl/all.pem and in the trust bundle agents write into crl.pem.
            """)

    @OptionGroup var options: IssuerOptions

    @Option(help: ArgumentHelp("The root's key, a file or a pkcs11: URI (default: DIR/root_key.pem or ca.json's root_key, or where `root prepare` put the active root's).",
                               valueName: "file"))
    var rootKey: String?

    @OptionGroup var pkcs11: PKCS11Options

    @Option(help: ArgumentHelp("How long the CRL is valid, 1d to 400d (default: 365d).", valueName: "duration"))
    var nextUpdate: DurationArgument?

    func run() async throws {
        try await runReportingErrors {
            let lifetime = nextUpdate.map { TimeInterval($0.seconds) } ?? RootCRL.defaultLifetime
            guard RootCRL.lifetimeRange.contains(lifetime) else {
                throw CLIError("--next-update must be between 1d and 400d")
            }
            let context = try await IssuerCommandContext.open(options, pkcs11: pkcs11)
            let (key, keyPath) = try context.rootKey(rootKey, snapshot: try await context.snapshot())
            var operations = context.operations()
            operations.rootCRLLifetime = lifetime
            let signed = try await operations.signRootCRL(rootKey: key, keyPath: keyPath)
            if options.json {
                try printJSON(RootCRLJSON(root: signed.root.serial, number: signed.crl.number, revoked: signed.revoked,
                                          next_update: iso8601(signed.crl.nextUpdate), generation: signed.generation))
                return
            }
            print("root CRL of \(signed.root.serial): number \(signed.crl.number), \(signed.revoked) revoked, "
                + "next update \(iso8601(signed.crl.nextUpdate)) (run this again before then)")
        }
    }

    struct RootCRLJSON: Encodable {
        let root: String
        let number: Int64
        let revoked: Int
        let next_update: String
        let generation: Int64
    }
}
