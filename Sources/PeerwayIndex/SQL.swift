import Foundation

/// A value bound to or read from SQL: both stores' column types map onto these.
enum SQLValue: Hashable, Sendable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    var int64: Int64? {
        switch self {
        case .integer(let v): return v
        case .real(let v): return Int64(exactly: v)
        default: return nil
        }
    }

    var string: String? {
        if case .text(let v) = self { return v }
        return nil
    }

    var bytes: [UInt8]? {
        if case .blob(let v) = self { return v }
        return nil
    }
}

/// The SQL both stores speak, and where they differ.
enum SQLDialect: Sendable {
    case sqlite
    case postgres

    /// Appended to a SELECT that reads rows the transaction will change or whose absence it relies
    /// on: PostgreSQL locks them; SQLite needs nothing, its writes being serialised.
    var forUpdate: String { self == .postgres ? " FOR UPDATE" : "" }
}

/// Failures of a driver that the engine turns into refusals.
enum SQLFailure: Error {
    /// A UNIQUE or PRIMARY KEY constraint refused a row (a concurrent insert won the race).
    case uniqueViolation(String)
}

/// One open transaction (or read), used synchronously by the engine. `?` marks each argument;
/// arguments are always bound, never spliced into the text.
protocol SQLConnection {
    var dialect: SQLDialect { get }
    /// Runs a statement; returns the number of rows it changed.
    @discardableResult
    func execute(_ sql: String, _ args: [SQLValue]) throws -> Int
    /// Runs a query; returns its rows, each with the columns in the order selected.
    func rows(_ sql: String, _ args: [SQLValue]) throws -> [[SQLValue]]
}

extension SQLConnection {
    func row(_ sql: String, _ args: [SQLValue]) throws -> [SQLValue]? {
        try rows(sql, args).first
    }

    func int(_ sql: String, _ args: [SQLValue]) throws -> Int64 {
        guard let value = try row(sql, args)?.first?.int64 else { throw IndexError.storage("expected a number from: \(sql)") }
        return value
    }
}

/// Runs the engine's transactions on a database.
protocol SQLDriver: Sendable {
    /// A read-write transaction, committed when `body` returns and rolled back when it throws.
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> T) async throws -> T
    /// A read (a consistent snapshot where the database offers one).
    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> T) async throws -> T
    func close() async
}

/// Placeholders `?, ?, ?` for a list of `count` arguments.
func placeholders(_ count: Int) -> String {
    Array(repeating: "?", count: count).joined(separator: ", ")
}

extension Date {
    init(milliseconds: Int64) { self.init(timeIntervalSince1970: Double(milliseconds) / 1000) }
    var milliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded(.down)) }
}
