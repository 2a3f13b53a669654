import Foundation
import Testing

/// Prometheus' text format checked by a real parser: Python's prometheus_client (PyPI
/// `prometheus-client`, installed by scripts/test). Missing, it is a failure under CI (CI=true)
/// and a skip elsewhere.
enum PrometheusTextParser {
    /// One sample as the parser read it.
    struct Sample: Decodable, Sendable {
        let name: String
        let labels: [String: String]
        let value: Double
    }

    /// One family: its name as the parser gives it (a counter's without `_total`), type, HELP, samples.
    struct Family: Decodable, Sendable {
        let name: String
        let type: String
        let help: String
        let samples: [Sample]
    }

    /// Families parsed; every line must parse (the parser raises on any it cannot read).
    struct Parsed: Sendable {
        let families: [Family]

        /// The value of the sample `name` with exactly these labels.
        func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            families.lazy.flatMap(\.samples).first { $0.name == name && $0.labels == labels }?.value
        }

        /// The family whose samples include `name`.
        func family(of name: String) -> Family? {
            families.first { $0.samples.contains { $0.name == name } || $0.name == name }
        }
    }

    /// Exit status of the script when prometheus_client cannot be imported.
    static let missingModuleStatus: Int32 = 3

    static let script = """
    import json, sys
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        sys.exit(\(missingModuleStatus))
    out = []
    for f in text_string_to_metric_families(sys.stdin.read()):
        out.append({"name": f.name, "type": f.type, "help": f.documentation,
                    "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
    print(json.dumps(out))
    """

    struct ParserMissing: Error {}
    struct ParseFailed: Error, CustomStringConvertible {
        let output: String
        var description: String { "prometheus_client refused the exposition: \(output)" }
    }

    /// `text` parsed, or nil (a skip) when python3 or prometheus_client is missing outside CI.
    static func parse(_ text: String) throws -> Parsed? {
        guard let python = Tools.path(of: "python3") else {
            return try missing("python3 is not installed")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script]
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let complaint = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        if process.terminationStatus == missingModuleStatus {
            return try missing("python3 cannot import prometheus_client")
        }
        guard process.terminationStatus == 0 else {
            throw ParseFailed(output: String(decoding: complaint, as: UTF8.self))
        }
        return Parsed(families: try JSONDecoder().decode([Family].self, from: data))
    }

    private static func missing(_ why: String) throws -> Parsed? {
        if Tools.inCI {
            Issue.record("\(why): scripts/test installs it (pip install prometheus-client)")
            throw ParserMissing()
        }
        print("skipping the Prometheus parser check: \(why) (pip install prometheus-client)")
        return nil
    }
}
