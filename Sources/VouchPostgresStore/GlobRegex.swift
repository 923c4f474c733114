/// A shell glob as an anchored PostgreSQL regular expression, so `--identity` means in PostgreSQL
/// what SQLite's GLOB and the authority's fnmatch make of it: `*` any run of characters (`/`
/// included), `?` one character, `[...]` a set (`[!...]` or `[^...]` its complement), `\` quotes
/// the next character; everything else stands for itself, case-sensitive.
enum GlobRegex {
    static func translating(_ glob: String) -> String {
        let characters = Array(glob)
        var regex = "^"
        var index = 0
        while index < characters.count {
            let character = characters[index]
            switch character {
            case "*":
                regex += ".*"
            case "?":
                regex += "."
            case "\\" where index + 1 < characters.count:
                index += 1
                regex += literal(characters[index])
            case "[":
                if let (set, end) = bracket(characters, from: index) {
                    regex += set
                    index = end
                } else {
                    regex += literal(character)
                }
            default:
                regex += literal(character)
            }
            index += 1
        }
        return regex + "$"
    }

    /// ASCII punctuation quoted with `\`, which in a PostgreSQL regular expression (in or out of
    /// a bracket) makes any non-alphanumeric character stand for itself.
    private static func literal(_ character: Character) -> String {
        guard let ascii = character.asciiValue, !character.isLetter, !character.isNumber else { return String(character) }
        return "\\" + String(UnicodeScalar(ascii))
    }

    /// The set opened by the `[` at `start` and the index of its closing `]`; nil when it never
    /// closes (then the `[` stands for itself, as in fnmatch).
    private static func bracket(_ characters: [Character], from start: Int) -> (String, Int)? {
        var set = "["
        var index = start + 1
        if index < characters.count, characters[index] == "!" || characters[index] == "^" {
            set += "^"
            index += 1
        }
        var first = true
        while index < characters.count {
            let character = characters[index]
            if character == "]" && !first {
                return (set + "]", index)
            }
            first = false
            if character == "[", index + 1 < characters.count, characters[index + 1] == ":",
               let close = closingClass(characters, from: index + 2) {
                // A class such as [:digit:], copied as it is.
                set += String(characters[index...close])
                index = close + 1
                continue
            }
            if character == "\\", index + 1 < characters.count {
                index += 1
                set += literal(characters[index])
            } else if character == "-" || character == "]" {
                set += String(character)
            } else {
                set += literal(character)
            }
            index += 1
        }
        return nil
    }

    /// The index of the `]` of a `:]` that ends a character class name.
    private static func closingClass(_ characters: [Character], from start: Int) -> Int? {
        var index = start
        while index + 1 < characters.count {
            if characters[index] == ":" && characters[index + 1] == "]" { return index + 1 }
            guard characters[index].isLetter else { return nil }
            index += 1
        }
        return nil
    }
}
