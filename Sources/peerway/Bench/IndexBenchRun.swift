import Foundation
import PeerwayIndex

/// One store's benchmark run for `peerway bench index`.
struct IndexBenchRun {
    let store: SQLIndexStore
    let label: String
    let options: IndexBenchCommand

    static let tiers: [(String, Int)] = [("bronze", 60), ("silver", 25), ("gold", 10), ("platinum", 5)]

    struct Report {
        var label: String
        var users: Int
        var loadSeconds: Double
        var singleWrites: Int
        var singleSeconds: Double
        var singleLatencies: [Double]
        var searches: [(shape: String, latencies: [Double], meanResults: Double)]

        static func percentile(_ sorted: [Double], _ p: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
        }

        var text: String {
            var lines = ["\(label): \(users) users loaded in \(String(format: "%.1f", loadSeconds)) s = \(Int(Double(users) / max(loadSeconds, 1e-9))) users/s (transactions of \(options.batch))"]
            if singleWrites > 0 {
                let sorted = singleLatencies.sorted()
                lines.append("\(label): \(singleWrites) durable single writes: \(Int(Double(singleWrites) / max(singleSeconds, 1e-9))) writes/s, p50 \(ms(Self.percentile(sorted, 0.5))) p99 \(ms(Self.percentile(sorted, 0.99)))")
            }
            var all: [Double] = []
            for search in searches {
                let sorted = search.latencies.sorted()
                all += sorted
                lines.append("\(label): search \(search.shape.padding(toLength: 34, withPad: " ", startingAt: 0)) p50 \(ms(Self.percentile(sorted, 0.5))) p99 \(ms(Self.percentile(sorted, 0.99))) (mean \(String(format: "%.1f", search.meanResults)) results)")
            }
            all.sort()
            lines.append("\(label): search overall p50 \(ms(Self.percentile(all, 0.5))) p99 \(ms(Self.percentile(all, 0.99)))")
            return lines.joined(separator: "\n")
        }

        var json: String {
            var all: [Double] = []
            var shapes: [String] = []
            for search in searches {
                let sorted = search.latencies.sorted()
                all += sorted
                shapes.append("{\"shape\":\"\(search.shape.replacingOccurrences(of: "\"", with: "\\\""))\",\"p50_ms\":\(Self.percentile(sorted, 0.5) * 1000),\"p99_ms\":\(Self.percentile(sorted, 0.99) * 1000)}")
            }
            all.sort()
            let sorted = singleLatencies.sorted()
            return "{\"store\":\"\(label)\",\"users\":\(users),\"load_users_per_s\":\(Double(users) / max(loadSeconds, 1e-9)),\"single_writes_per_s\":\(Double(singleWrites) / max(singleSeconds, 1e-9)),\"single_write_p50_ms\":\(Self.percentile(sorted, 0.5) * 1000),\"single_write_p99_ms\":\(Self.percentile(sorted, 0.99) * 1000),\"search_p50_ms\":\(Self.percentile(all, 0.5) * 1000),\"search_p99_ms\":\(Self.percentile(all, 0.99) * 1000),\"shapes\":[\(shapes.joined(separator: ","))]}"
        }

        func ms(_ seconds: Double) -> String { String(format: "%.2f ms", seconds * 1000) }

        let options: IndexBenchCommand
    }

    static func metadata(_ i: Int, using rng: inout some RandomNumberGenerator) -> [String: String] {
        var roll = Int.random(in: 0..<100, using: &rng)
        var tier = "bronze"
        for (name, share) in tiers {
            if roll < share { tier = name; break }
            roll -= share
        }
        return ["handle": "u\(i)", "city": "c\(Int.random(in: 0..<1000, using: &rng))", "age": "\(Int.random(in: 0..<100, using: &rng))",
                "tier": tier, "lang": "l\(Int.random(in: 0..<20, using: &rng))"]
    }

    func run() async throws -> Report {
        var rng = SystemRandomNumberGenerator()
        let record = try PasswordHasher.testing.record(for: "benchmark password")
        let clock = ContinuousClock()
        let n = options.users

        // Load.
        let loadStart = clock.now
        var lastReport = clock.now
        var i = 0
        while i < n {
            let count = min(options.batch, n - i)
            let batch = (i..<i + count).map { (name: "user\($0)", password: record, metadata: Self.metadata($0, using: &rng)) }
            _ = try await store.importUsers(batch)
            i += count
            if clock.now - lastReport > .seconds(10) {
                lastReport = clock.now
                let elapsed = (clock.now - loadStart).seconds
                FileHandle.standardError.write(Data("\(label): \(i)/\(n) users, \(Int(Double(i) / elapsed)) users/s\n".utf8))
            }
        }
        let loadSeconds = (clock.now - loadStart).seconds
        if options.analyze { try await store.analyze() }

        // Durable single writes.
        var singleLatencies: [Double] = []
        let singleStart = clock.now
        for j in 0..<options.singleWrites {
            let start = clock.now
            _ = try await store.importUsers([(name: "single\(j)", password: record, metadata: Self.metadata(n + j, using: &rng))])
            singleLatencies.append((clock.now - start).seconds)
        }
        let singleSeconds = (clock.now - singleStart).seconds

        // Searches.
        let shapes: [(String, (inout SystemRandomNumberGenerator) -> String)] = [
            ("handle=uN (one user)", { "handle=u\(Int.random(in: 0..<n, using: &$0))" }),
            ("city=cK (0.1%)", { "city=c\(Int.random(in: 0..<1000, using: &$0))" }),
            ("city=cK AND age>50 (0.05%)", { "city=c\(Int.random(in: 0..<1000, using: &$0)) AND age>50" }),
            ("tier=platinum (5%)", { _ in "tier=platinum" }),
            ("tier=gold AND lang=lK (0.5%)", { "tier=gold AND lang=l\(Int.random(in: 0..<20, using: &$0))" }),
            ("age>=A AND age<A+1 (1%)", { let a = Int.random(in: 0..<99, using: &$0); return "age>=\(a) AND age<\(a + 1)" }),
            ("handle^=uNNN (prefix)", { "handle^=u\(Int.random(in: 100..<1000, using: &$0))" }),
            ("tier=bronze AND NOT lang=l0 (57%)", { _ in "tier=bronze AND NOT lang=l0" }),
            ("city=cK OR city=cJ (0.2%)", { "city=c\(Int.random(in: 0..<1000, using: &$0)) OR city=c\(Int.random(in: 0..<1000, using: &$0))" }),
        ]
        var results: [(shape: String, latencies: [Double], meanResults: Double)] = []
        for (shape, make) in shapes {
            var latencies: [Double] = []
            var total = 0
            for _ in 0..<options.searches {
                let query = try IndexQuery(parsing: make(&rng))
                let start = clock.now
                let page = try await store.searchUsers(query, after: nil, limit: 20)
                latencies.append((clock.now - start).seconds)
                total += page.items.count
            }
            results.append((shape, latencies, Double(total) / Double(options.searches)))
        }
        return Report(label: label, users: n, loadSeconds: loadSeconds, singleWrites: options.singleWrites, singleSeconds: singleSeconds,
                      singleLatencies: singleLatencies, searches: results, options: options)
    }
}

extension Duration {
    /// The duration in seconds, as a Double (for the benchmarks' figures).
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
