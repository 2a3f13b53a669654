import Foundation
import TOMLKit

extension SupernodeSettings {
    /// Longest configuration file read, in bytes (a complete one is under 2 KiB).
    public static let maximumFileBytes = 64 * 1024

    /// Reads and parses the configuration file at `path` (`--config FILE`).
    public static func load(path: String) throws(SupernodeSettingsError) -> SupernodeSettings {
        let data: Data
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            if let size = attributes[.size] as? Int, size > maximumFileBytes {
                throw SupernodeSettingsError.unreadable(path: path, reason: "it is \(size) bytes; a configuration file may have \(maximumFileBytes)")
            }
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch let error as SupernodeSettingsError {
            throw error
        } catch {
            throw .unreadable(path: path, reason: (error as NSError).localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw .unreadable(path: path, reason: "it is not UTF-8 text")
        }
        return try parse(toml: text, source: path)
    }

    /// Parses a configuration file's text: TOML whose keys are `keys`' names, each with the type
    /// and form its flag takes. `source` names the file in errors.
    ///
    /// Refuses (naming the key) a key that is not a flag of `peerway supernode`, a value of
    /// another type than the key's, and a value its flag would refuse (an address that does
    /// not parse, a number out of range).
    public static func parse(toml text: String, source: String = "configuration") throws(SupernodeSettingsError) -> SupernodeSettings {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw .syntax(source: source, line: error.source.begin.line, column: error.source.begin.column, message: error.description)
        } catch {
            throw .syntax(source: source, line: 0, column: 0, message: "\(error)")
        }
        var settings = SupernodeSettings()
        for (name, value) in table.sorted(by: { $0.0 < $1.0 }) {
            guard let key = key(named: name) else {
                throw .unknownKey(source: source, key: name, suggestion: suggestion(for: name))
            }
            func wrongType() -> SupernodeSettingsError {
                .wrongType(source: source, key: name, expected: "\(key.type) (\(key.form))", found: describe(value.type))
            }
            switch key.field {
            case .string(let path):
                guard let text = value.string else { throw wrongType() }
                guard !text.isEmpty, key.check?(text) ?? true else {
                    throw .invalidValue(source: source, key: name, value: text, expected: key.form)
                }
                settings[keyPath: path] = text
            case .integer(let path, let range):
                guard let number = value.int else { throw wrongType() }
                guard range.contains(number) else {
                    throw .invalidValue(source: source, key: name, value: String(number), expected: key.form)
                }
                settings[keyPath: path] = number
            case .boolean(let path):
                guard let flag = value.bool else { throw wrongType() }
                settings[keyPath: path] = flag
            }
        }
        return settings
    }

    private static func describe(_ type: TOMLType) -> String {
        switch type {
        case .table: return "a table"
        case .array: return "an array"
        case .string: return "a string"
        case .int: return "an integer"
        case .double: return "a floating-point number"
        case .bool: return "a boolean"
        case .date, .time, .dateTime: return "a date or time"
        }
    }

    /// The key nearest to a misspelt one (at most 2 edits away), if any.
    static func suggestion(for name: String) -> String? {
        let best = keys.map { ($0.name, editDistance(name, $0.name)) }.min { $0.1 < $1.1 }
        guard let best, best.1 <= 2 else { return nil }
        return best.0
    }

    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8), b = Array(b.utf8)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var diagonal = row[0]
            row[0] = i
            for j in 1...b.count {
                let above = row[j]
                row[j] = min(above + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }
}

/// Why a supernode configuration file was refused; each names the file, and the key when one is at fault.
public enum SupernodeSettingsError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file could not be read.
    case unreadable(path: String, reason: String)
    /// The file is not valid TOML.
    case syntax(source: String, line: Int, column: Int, message: String)
    /// A key that is no flag of `peerway supernode`.
    case unknownKey(source: String, key: String, suggestion: String?)
    /// A value of another type than its key takes.
    case wrongType(source: String, key: String, expected: String, found: String)
    /// A value of the right type that its flag would refuse.
    case invalidValue(source: String, key: String, value: String, expected: String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason):
            return "cannot read the configuration file \(path): \(reason)"
        case .syntax(let source, let line, let column, let message):
            return "\(source):\(line):\(column): not valid TOML: \(message)"
        case .unknownKey(let source, let key, let suggestion):
            let hint = suggestion.map { "did you mean '\($0)'? " } ?? ""
            return "\(source): unknown key '\(key)': \(hint)the keys are the long flags of `peerway supernode`: "
                + SupernodeSettings.keys.map(\.name).joined(separator: ", ")
        case .wrongType(let source, let key, let expected, let found):
            return "\(source): key '\(key)' must be \(expected), not \(found)"
        case .invalidValue(let source, let key, let value, let expected):
            return "\(source): key '\(key)' is '\(value)': expected \(expected)"
        }
    }
}
