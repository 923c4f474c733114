import ArgumentParser
import VouchAPI

@main
struct Vouch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vouch",
        abstract: "Vouch: an internal certificate authority with mTLS, rotation and revocation.",
        version: VouchVersion.current,
        subcommands: [QuickstartCommand.self, CACommand.self, ServerCommand.self, AgentCommand.self, TokenCommand.self, CertCommand.self, FleetCommand.self, AuditCommand.self,
                      DatabaseCommand.self, UICommand.self])
}
