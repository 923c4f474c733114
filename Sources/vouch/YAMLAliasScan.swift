import CYaml

/// Finds what a config file must not hold by scanning libyaml's token stream, without building
/// any document: anchors (`&name`) and aliases (`*name`), which let a few hundred bytes expand into
/// gigabytes ("billion laughs"), and nesting deeper than `maximumDepth`, which makes libyaml's
/// scanner itself quadratic (a megabyte of `[` took tens of minutes). Vouch's config needs neither.
enum YAMLAliasScan {
    struct Found {
        /// What was refused, e.g. "YAML anchor found" or "nesting deeper than 32 levels".
        let problem: String
        /// 1-based line
        let line: Int
    }

    /// Far deeper than any Vouch config (about 4 levels).
    static let maximumDepth = 32

    /// The first refused token, or nil if none. Scanning stops at the first syntax error and
    /// returns nil: the YAML parser that runs next reports it with its usual message.
    static func firstAnchorOrAlias(in text: String) -> Found? {
        var bytes = Array(text.utf8)
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return nil }
        defer { yaml_parser_delete(&parser) }
        return bytes.withUnsafeMutableBufferPointer { buffer -> Found? in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var depth = 0
            while true {
                var token = yaml_token_t()
                guard yaml_parser_scan(&parser, &token) == 1 else { return nil }
                defer { yaml_token_delete(&token) }
                let line = Int(token.start_mark.line) + 1
                switch token.type {
                case YAML_ALIAS_TOKEN: return Found(problem: "YAML alias found", line: line)
                case YAML_ANCHOR_TOKEN: return Found(problem: "YAML anchor found", line: line)
                case YAML_FLOW_SEQUENCE_START_TOKEN, YAML_FLOW_MAPPING_START_TOKEN, YAML_BLOCK_SEQUENCE_START_TOKEN,
                     YAML_BLOCK_MAPPING_START_TOKEN:
                    depth += 1
                    if depth > maximumDepth { return Found(problem: "nesting deeper than \(maximumDepth) levels", line: line) }
                case YAML_FLOW_SEQUENCE_END_TOKEN, YAML_FLOW_MAPPING_END_TOKEN, YAML_BLOCK_END_TOKEN:
                    depth -= 1
                case YAML_STREAM_END_TOKEN, YAML_NO_TOKEN: return nil
                default: continue
                }
            }
        }
    }
}
