import ArgumentParser

/// Parses durations such as `90s`, `15m`, `24h`, `7d`, `1h30m`.
struct DurationArgument: ExpressibleByArgument, Sendable {
    let seconds: Int64

    var duration: Duration { .seconds(seconds) }

    /// A default shown in `--help` as it would be typed: `30s`, `10m`, `1h30m`.
    var defaultValueDescription: String {
        guard seconds > 0 else { return "0s" }
        var rest = seconds, text = ""
        for (unit, size) in [("d", Int64(86400)), ("h", 3600), ("m", 60), ("s", 1)] where rest >= size {
            text += "\(rest / size)\(unit)"
            rest %= size
        }
        return text
    }

    init?(argument: String) {
        guard let seconds = Self.parse(argument) else { return nil }
        self.seconds = seconds
    }

    static func parse(_ text: String) -> Int64? {
        var total: Int64 = 0
        var number = ""
        guard !text.isEmpty else { return nil }
        for character in text {
            if character.isASCII, character.isNumber {
                number.append(character)
                continue
            }
            guard let value = Int64(number) else { return nil }
            let unit: Int64
            switch character {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86400
            default: return nil
            }
            let (product, overflow) = value.multipliedReportingOverflow(by: unit)
            guard !overflow else { return nil }
            let (sum, sumOverflow) = total.addingReportingOverflow(product)
            guard !sumOverflow else { return nil }
            total = sum
            number = ""
        }
        if !number.isEmpty {
            guard let value = Int64(number) else { return nil }  // bare number = seconds
            let (sum, overflow) = total.addingReportingOverflow(value)
            guard !overflow else { return nil }
            total = sum
        }
        return total
    }
}
