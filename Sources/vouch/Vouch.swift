import ArgumentParser

@main
struct Vouch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vouch",
        abstract: "Vouch: an internal certificate authority with mTLS, rotation and revocation.",
        subcommands: [QuickstartCommand.self, CACommand.self, ServerCommand.self, AgentCommand.self, TokenCommand.self, CertCommand.self, AuditCommand.self,
                      DatabaseCommand.self, UICommand.self])
}
