import ArgumentParser
import Logging

enum LogFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// Sets up swift-log once per process: one line per event on stderr.
func bootstrapLogging(level: Logger.Level, format: LogFormat) {
    LoggingSystem.bootstrap { label in
        var handler: any LogHandler = format == .json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Logging flags of the long-running commands.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (default info).")
    var logLevel: Logger.Level?

    @Option(help: "Log format: text or json, one object per line (default text).")
    var logFormat: LogFormat?

    /// Flags first, then the config file's values, then the defaults.
    func bootstrap(configLevel: String?, configFormat: String?) throws {
        let level = try logLevel ?? configLevel.map { text in
            guard let level = Logger.Level(rawValue: text) else { throw CLIError("config key log_level: unknown level \(text)") }
            return level
        } ?? .info
        let format = try logFormat ?? configFormat.map { text in
            guard let format = LogFormat(rawValue: text) else { throw CLIError("config key log_format: use text or json, not \(text)") }
            return format
        } ?? .text
        bootstrapLogging(level: level, format: format)
    }
}
