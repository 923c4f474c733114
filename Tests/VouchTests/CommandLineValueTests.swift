import Testing
@testable import vouch

/// Values the CLI and the config file take, parsed as `vouch` parses them.
@Suite("Command-line values")
struct CommandLineValueTests {
    @Test(arguments: [
        ("90s", 90), ("15m", 900), ("24h", 86_400), ("7d", 604_800), ("1h30m", 5_400), ("1d2h3m4s", 93_784),
        ("45", 45), ("2m30", 150), ("0s", 0),
    ] as [(String, Int64)])
    func durations(text: String, seconds: Int64) {
        #expect(DurationArgument(argument: text)?.seconds == seconds)
        #expect(DurationArgument(argument: text)?.duration == .seconds(seconds))
    }

    /// `--help` shows a default as it would be typed, and it parses back to the same value.
    @Test(arguments: [(30, "30s"), (600, "10m"), (5_400, "1h30m"), (93_784, "1d2h3m4s"), (0, "0s")] as [(Int64, String)])
    func durationDefaultsAreShownAsTyped(seconds: Int64, shown: String) {
        let value = DurationArgument(argument: "\(seconds)s")!
        #expect(value.defaultValueDescription == shown)
        #expect(DurationArgument(argument: shown)?.seconds == seconds)
    }

    @Test(arguments: [
        "", "s", "h5", "1w", "1.5h", "-5s", "5 s", "１h", "٣s", "9223372036854775807m", "9223372036854775807s1s", "99999999999999999999",
    ])
    func durationsThatAreRefused(text: String) {
        #expect(DurationArgument(argument: text) == nil)
    }
}
