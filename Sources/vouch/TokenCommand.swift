import ArgumentParser
import Foundation
import VouchAPI

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Manage one-time enrollment tokens.",
        subcommands: [TokenCreate.self, TokenList.self, TokenRevoke.self])
}

struct TokenCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create an enrollment token; the token is alone on the last stdout line.")

    @OptionGroup var connection: AdminConnectionOptions

    @Option(help: "SPIFFE ID the token grants, e.g. spiffe://example.org/svc/web.")
    var spiffeId: String

    @Option(name: .customLong("dns"), help: "DNS name the certificate may carry (repeatable).")
    var dnsNames: [String] = []

    @Option(name: .customLong("ip"), help: "IP address the certificate may carry (repeatable).")
    var ipAddresses: [String] = []

    @Option(help: "How long the token stays valid.")
    var ttl: DurationArgument = DurationArgument(argument: "15m")!

    @Option(help: "How many enrollments it allows.")
    var uses: Int = 1

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() async throws {
        try await runReportingErrors {
            try connection.checkFiles()
            var request = Vouch_V1_CreateTokenRequest()
            request.spiffeID = spiffeId
            request.dnsNames = dnsNames
            request.ipAddresses = ipAddresses
            request.ttlSeconds = ttl.seconds
            request.uses = Int32(clamping: uses)
            let response = try await VouchClient.with(server: connection.server, credentials: connection.credentials) { client in
                try await Vouch_V1_Admin.Client(wrapping: client).createToken(request, options: connection.callOptions)
            }
            if json {
                try printJSON(["token": response.token, "token_id": response.tokenID, "spiffe_id": spiffeId,
                               "expires_at": iso8601(response.expiresAt)])
            } else {
                print("token id:   \(response.tokenID)")
                print("spiffe id:  \(spiffeId)")
                print("expires at: \(iso8601(response.expiresAt))")
                print(response.token)
            }
        }
    }
}

struct TokenList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List enrollment tokens (never their secrets).")

    @OptionGroup var connection: AdminConnectionOptions

    @Flag(help: "Print the result as JSON.")
    var json = false

    struct Row: Encodable {
        let token_id, spiffe_id, created_at, expires_at: String
        let dns_names, ip_addresses: [String]
        let uses_allowed, uses_consumed: Int32
        let revoked: Bool
    }

    func run() async throws {
        try await runReportingErrors {
            try connection.checkFiles()
            let tokens = try await VouchClient.with(server: connection.server, credentials: connection.credentials) { client in
                try await Vouch_V1_Admin.Client(wrapping: client).listTokens(Vouch_V1_ListTokensRequest(), options: connection.callOptions).tokens
            }
            if json {
                try printJSON(tokens.map {
                    Row(token_id: $0.tokenID, spiffe_id: $0.spiffeID, created_at: iso8601($0.createdAt), expires_at: iso8601($0.expiresAt),
                        dns_names: $0.dnsNames, ip_addresses: $0.ipAddresses, uses_allowed: $0.usesAllowed,
                        uses_consumed: $0.usesConsumed, revoked: $0.revoked)
                })
            } else {
                printTable(["TOKEN ID", "SPIFFE ID", "USES", "EXPIRES", "STATE"], tokens.map {
                    let state = $0.revoked ? "revoked" : ($0.usesConsumed >= $0.usesAllowed ? "used"
                        : ($0.expiresAt <= Int64(Date().timeIntervalSince1970) ? "expired" : "usable"))
                    return [$0.tokenID, $0.spiffeID, "\($0.usesConsumed)/\($0.usesAllowed)", iso8601($0.expiresAt), state]
                })
            }
        }
    }
}

struct TokenRevoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke an enrollment token by id.")

    @OptionGroup var connection: AdminConnectionOptions

    @Argument(help: "Token id (from `vouch token list`).")
    var tokenID: String

    func run() async throws {
        try await runReportingErrors {
            try connection.checkFiles()
            var request = Vouch_V1_RevokeTokenRequest()
            request.tokenID = tokenID
            _ = try await VouchClient.with(server: connection.server, credentials: connection.credentials) { client in
                try await Vouch_V1_Admin.Client(wrapping: client).revokeToken(request, options: connection.callOptions)
            }
            print("revoked token \(tokenID)")
        }
    }
}
