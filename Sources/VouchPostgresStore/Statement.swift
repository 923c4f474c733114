import PostgresNIO

/// SQL put together a piece at a time, its parameters numbered $1, $2, … as they are bound:
/// for queries whose conditions depend on the request (PostgresQuery's interpolation builds
/// only whole statements).
struct Statement {
    private var pieces: [String] = []
    private var binds = PostgresBindings()
    private var hasCondition = false

    /// Adds `text` to the WHERE clause, joined to the conditions before it with AND.
    mutating func condition(_ text: String) {
        pieces.append((hasCondition ? "AND " : "WHERE ") + text)
        hasCondition = true
    }

    mutating func append(_ text: String) {
        pieces.append(text)
    }

    /// Adds a parameter holding `value`.
    mutating func bind(_ value: some PostgresDynamicTypeEncodable) {
        binds.append(value)
        pieces.append("$\(binds.count)")
    }

    /// Adds a parameter holding `value`, NULL when nil, of the SQL type `type`.
    mutating func bind(_ value: (some PostgresDynamicTypeEncodable)?, as type: String) {
        binds.append(value)
        pieces.append("$\(binds.count)::\(type)")
    }

    /// The statement `head` followed by the pieces.
    func query(selecting head: String) -> PostgresQuery {
        PostgresQuery(unsafeSQL: ([head] + pieces).joined(separator: " "), binds: binds)
    }
}
