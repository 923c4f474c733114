import CYaml

/// Finds the first YAML anchor (`&name`) or alias (`*name`) in a text by scanning libyaml's token
/// stream, without building any document. Aliases let a few hundred bytes expand into gigabytes
/// when the document is built ("billion laughs"); Vouch's config never needs them.
enum YAMLAliasScan {
    struct Found {
        /// "anchor" or "alias"
        let kind: String
        /// 1-based line
        let line: Int
    }

    /// The first anchor or alias, or nil if none. Scanning stops at the first syntax error and
    /// returns nil: the YAML parser that runs next reports it with its usual message.
    static func firstAnchorOrAlias(in text: String) -> Found? {
        var bytes = Array(text.utf8)
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return nil }
        defer { yaml_parser_delete(&parser) }
        return bytes.withUnsafeMutableBufferPointer { buffer -> Found? in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            while true {
                var token = yaml_token_t()
                guard yaml_parser_scan(&parser, &token) == 1 else { return nil }
                defer { yaml_token_delete(&token) }
                switch token.type {
                case YAML_ALIAS_TOKEN: return Found(kind: "alias", line: Int(token.start_mark.line) + 1)
                case YAML_ANCHOR_TOKEN: return Found(kind: "anchor", line: Int(token.start_mark.line) + 1)
                case YAML_STREAM_END_TOKEN, YAML_NO_TOKEN: return nil
                default: continue
                }
            }
        }
    }
}
