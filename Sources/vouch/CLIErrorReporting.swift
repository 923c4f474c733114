import ArgumentParser
import Foundation
import VouchAPI

/// A failure the CLI reports as one line on stderr with exit code 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs a command body; any error becomes `vouch: <reason>` and exit code 1.
func runReportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as ExitCode {
        throw error
    } catch {
        // As table cells: the reason may quote what a CA sent, and must stay one line that cannot drive the terminal.
        FileHandle.standardError.write(Data("vouch: \(terminalText(describe(error)))\n".utf8))
        throw ExitCode.failure
    }
}
