import Testing
@testable import VouchAuthority

/// Refusals quote what the caller sent (a SAN, a host name, a serial). Shown in a log line or a
/// terminal, the quote must not reorder, hide or break the line: every control character,
/// C1 included, and every bidi, zero-width or line-separator character is written `\u{…}`.
@Test func quotedTextShowsHiddenCharactersAsEscapes() {
    let hostile = "web\u{202E}gpj.exe\u{200B}x\u{2028}y\u{85}z\u{1B}[31m"
    let quoted = AuthorityError.quoted(hostile)
    #expect(quoted == #""web\u{202E}gpj.exe\u{200B}x\u{2028}y\u{85}z\u{1B}[31m""#)
    #expect(!quoted.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.properties.generalCategory == .format })
}

@Test func quotedTextIsCutAfterEscaping() {
    let long = String(repeating: "\u{202E}", count: 100)
    let quoted = AuthorityError.quoted(long, limit: 3)
    #expect(quoted == #""\u{202E}\u{202E}\u{202E}"… (300 bytes)"#)
}

@Test func plainTextIsQuotedAsBefore() {
    #expect(AuthorityError.quoted("spiffe://example.org/svc/web") == #""spiffe://example.org/svc/web""#)
    #expect(AuthorityError.quoted("tab\there") == #""tab\there""#)
}
