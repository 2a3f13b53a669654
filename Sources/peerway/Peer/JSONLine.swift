import Foundation

/// A JSON value for `peerway peer --json` lines: built by hand so keys keep their order (`event`
/// first), which makes the lines pleasant to read as well as to parse.
enum JSONValue {
    case string(String)
    case number(Double)
    case int(Int)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    var text: String {
        switch self {
        case .string(let s): return Self.quote(s)
        case .number(let d): return d.isFinite ? String(format: "%.3f", d) : "null"
        case .int(let i): return String(i)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .array(let items): return "[" + items.map(\.text).joined(separator: ",") + "]"
        case .object(let pairs): return "{" + pairs.map { Self.quote($0.0) + ":" + $0.1.text }.joined(separator: ",") + "}"
        }
    }

    /// RFC 8259 string escaping.
    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// One line of `peerway peer` output: an event name, its fields, and the sentence humans see.
struct PeerOutputLine {
    var event: String
    var fields: [(String, JSONValue)]
    var human: String

    func render(json: Bool) -> String {
        json ? JSONValue.object([("event", .string(event))] + fields).text : human
    }
}
