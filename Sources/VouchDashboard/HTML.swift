/// Markup built only from escaped text and elements whose tag and attribute names are
/// literals in this module: data reaches a page as text or as a quoted attribute value,
/// never as markup, whatever it contains.
public struct HTML: Sendable, ExpressibleByStringLiteral {
    public let markup: String

    private init(markup: String) { self.markup = markup }

    /// A literal is text too; interpolation is not offered, so data cannot slip in unescaped.
    public init(stringLiteral value: StaticString) { markup = HTML.escape(value.description) }

    /// `&`, `<`, `>`, `"` and `'` as character references: safe as element text and inside a
    /// quoted attribute value. The one escaping function of the dashboard.
    public static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text.unicodeScalars {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    public static func text(_ text: String) -> HTML { HTML(markup: escape(text)) }

    public static let empty = HTML(markup: "")

    /// Elements that have no end tag.
    private static let void: Set<String> = ["meta", "link", "input", "br"]

    /// `<name a="v" ...>children</name>`; every value escaped and double-quoted.
    public static func element(_ name: StaticString, _ attributes: KeyValuePairs<StaticString, String> = [:],
                               _ children: [HTML] = []) -> HTML {
        var markup = "<\(name)"
        for (attribute, value) in attributes {
            markup += " \(attribute)=\"\(escape(value))\""
        }
        markup += ">"
        if void.contains(name.description) { return HTML(markup: markup) }
        for child in children { markup += child.markup }
        return HTML(markup: markup + "</\(name)>")
    }

    public static func element(_ name: StaticString, _ attributes: KeyValuePairs<StaticString, String> = [:],
                               _ children: HTML...) -> HTML {
        element(name, attributes, children)
    }

    /// A whole document: doctype, head with the stylesheet and icon (at `assets`, a path prefix), and `body`.
    public static func document(title: String, assets: String, body: [HTML]) -> String {
        "<!DOCTYPE html>" + element("html", ["lang": "en"],
            element("head", [:],
                    element("meta", ["charset": "utf-8"]),
                    element("meta", ["name": "viewport", "content": "width=device-width, initial-scale=1"]),
                    element("title", [:], text(title)),
                    element("link", ["rel": "stylesheet", "href": assets + "style.css"]),
                    element("link", ["rel": "icon", "href": assets + "icon.svg", "type": "image/svg+xml"])),
            element("body", [:], body)).markup
    }
}

/// Shorthand for the pages.
func el(_ name: StaticString, _ attributes: KeyValuePairs<StaticString, String> = [:], _ children: HTML...) -> HTML {
    HTML.element(name, attributes, children)
}

func el(_ name: StaticString, _ attributes: KeyValuePairs<StaticString, String> = [:], _ children: [HTML]) -> HTML {
    HTML.element(name, attributes, children)
}

func text(_ value: String) -> HTML { HTML.text(value) }
