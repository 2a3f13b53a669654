import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: the browser reads commands on its fd 3 and writes answers and
/// events on its fd 4, each a JSON object ended by a NUL byte). No port, no WebSocket, no library.
///
/// Why not `chromium --headless --dump-dom --virtual-time-budget=MS URL`: virtual time stands
/// still while a fetch is pending, and the dashboard's event stream is a fetch that never ends,
/// so the browser would wait for ever; without the budget, `--dump-dom` prints the page at its
/// load event, before any event arrived. Over the protocol a test waits, in real time, for what
/// the page shows, and takes the DOM and a screenshot when it is there.
///
/// The browser runs in a process group of its own (it and its helpers), ended by that id.
final class HeadlessChromium: @unchecked Sendable {
    /// Longest a protocol command may take to be answered.
    static let commandTimeoutSeconds: TimeInterval = 30

    /// Why the browser could not be driven.
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let pid: pid_t
    private let commands: Int32
    private let answers: Int32
    private let profile: String
    private var buffer: [UInt8] = []
    private var nextID = 0
    private let queue = DispatchQueue(label: "peerway.test.chromium")
    /// The page's session (after `open(_:)`).
    private(set) var session: String?
    /// What went wrong in the page so far: script exceptions, and console errors that are not
    /// about a network answer (a Content-Security-Policy refusal among them).
    private(set) var problems: [String] = []

    /// Starts `path` (a Chromium) headless with an empty profile of its own and a window of `width` x `height`.
    /// `nice(1)` and the niceness the browser runs at.
    static let nice = "/usr/bin/nice"
    static let niceness = "15"

    init(path: String, width: Int, height: Int) throws {
        profile = FileManager.default.temporaryDirectory.appendingPathComponent("peerway-chromium-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: profile, withIntermediateDirectories: true)
        let toBrowser = try Self.pipe(), fromBrowser = try Self.pipe()
        // Niced: the browser's processes must not starve the suites running beside it (the
        // PostgreSQL servers the INDEX tests start give up on a connection after 3 s).
        let arguments = [Self.nice, "-n", Self.niceness, path, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                         "--user-data-dir=\(profile)", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                         "--disable-background-networking", "--disable-sync", "--disable-component-update", "--mute-audio",
                         "--hide-scrollbars", "--window-size=\(width),\(height)", "about:blank"]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toBrowser.read, 3)
        posix_spawn_file_actions_adddup2(&actions, fromBrowser.write, 4)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, profile + "/stderr.log", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let status = posix_spawn(&child, Self.nice, &actions, &attributes, argv, environ)
        Glibc.close(toBrowser.read)
        Glibc.close(fromBrowser.write)
        guard status == 0 else {
            Glibc.close(toBrowser.write)
            Glibc.close(fromBrowser.read)
            throw Failure(description: "could not start \(path): \(String(cString: strerror(status)))")
        }
        pid = child
        commands = toBrowser.write
        answers = fromBrowser.read
    }

    /// A pipe whose two ends are above fd 4 (so that the child's dup2 onto 3 and 4 never meets
    /// them) and close on exec (so that only 3 and 4 reach the browser).
    private static func pipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard Glibc.pipe(&fds) == 0 else { throw Failure(description: "pipe: \(String(cString: strerror(errno)))") }
        let read = fcntl(fds[0], F_DUPFD_CLOEXEC, 10), write = fcntl(fds[1], F_DUPFD_CLOEXEC, 10)
        Glibc.close(fds[0])
        Glibc.close(fds[1])
        return (read, write)
    }

    /// What the browser wrote to its stderr (for failure messages).
    var log: String { (try? String(contentsOfFile: profile + "/stderr.log", encoding: .utf8)) ?? "" }

    // MARK: The protocol

    /// Sends one command and waits for its answer's `result` (in the page's session when `inPage`).
    func call(_ method: String, _ params: [String: Any] = [:], inPage: Bool = true) async throws -> [String: Any] {
        let message = try JSONSerialization.data(withJSONObject: params)
        let answer: Result<Data, Failure> = await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(returning: Result { () throws(Failure) -> Data in
                    try self.roundTrip(method, params: message, session: inPage ? self.session : nil)
                })
            }
        }
        let object = try JSONSerialization.jsonObject(with: try answer.get()) as? [String: Any] ?? [:]
        if let error = object["error"] { throw Failure(description: "\(method): \(error)") }
        return object["result"] as? [String: Any] ?? [:]
    }

    private func roundTrip(_ method: String, params: Data, session: String?) throws(Failure) -> Data {
        nextID += 1
        let id = nextID
        var text = "{\"id\":\(id),\"method\":\"\(method)\",\"params\":\(String(decoding: params, as: UTF8.self))"
        if let session { text += ",\"sessionId\":\"\(session)\"" }
        var bytes = Array((text + "}").utf8) + [0]
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeMutableBytes { write(commands, $0.baseAddress! + sent, $0.count - sent) }
            guard n > 0 else { throw Failure(description: "\(method): the browser closed its pipe\n\(log.suffix(2_000))") }
            sent += n
        }
        let deadline = Date().addingTimeInterval(Self.commandTimeoutSeconds)
        while true {
            while let end = buffer.firstIndex(of: 0) {
                let message = Data(buffer[..<end])
                buffer.removeSubrange(...end)
                guard let object = try? JSONSerialization.jsonObject(with: message) as? [String: Any] else { continue }
                if object["id"] as? Int == id { return message }
                note(object)
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw Failure(description: "\(method): no answer in \(Int(Self.commandTimeoutSeconds)) s") }
            var entry = pollfd(fd: answers, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, Int32(min(left, 1) * 1000)) >= 0 else { continue }
            guard entry.revents != 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 65_536)
            let n = read(answers, &chunk, chunk.count)
            guard n > 0 else { throw Failure(description: "\(method): the browser closed its pipe\n\(log.suffix(2_000))") }
            buffer += chunk[..<n]
        }
    }

    /// Keeps the events that say something went wrong in the page.
    private func note(_ event: [String: Any]) {
        let params = event["params"] as? [String: Any] ?? [:]
        switch event["method"] as? String {
        case "Runtime.exceptionThrown":
            problems.append("exception: \(params["exceptionDetails"] ?? params)")
        case "Log.entryAdded":
            let entry = params["entry"] as? [String: Any] ?? [:]
            if entry["level"] as? String == "error", entry["source"] as? String != "network" {
                problems.append("\(entry["source"] ?? "log"): \(entry["text"] ?? entry)")
            }
        default: break
        }
    }

    // MARK: Pages

    /// Opens a tab on `url` and attaches to it (later commands go to it).
    func open(_ url: String) async throws {
        let target = try await call("Target.createTarget", ["url": "about:blank"], inPage: false)
        guard let id = target["targetId"] as? String else { throw Failure(description: "no target: \(target)") }
        let attached = try await call("Target.attachToTarget", ["targetId": id, "flatten": true], inPage: false)
        session = attached["sessionId"] as? String
        _ = try await call("Page.enable")
        _ = try await call("Runtime.enable")
        _ = try await call("Log.enable")
        try await navigate(url)
    }

    func navigate(_ url: String) async throws {
        _ = try await call("Page.navigate", ["url": url])
    }

    /// The value of a JavaScript expression in the page (JSON-like values come back as such).
    func evaluate(_ expression: String) async throws -> Any? {
        let result = try await call("Runtime.evaluate", ["expression": expression, "returnByValue": true])
        if let exception = result["exceptionDetails"] { throw Failure(description: "\(expression): \(exception)") }
        return (result["result"] as? [String: Any])?["value"]
    }

    /// Waits until `expression` is true in the page (checked every 100 ms); false when it did not
    /// become true within `seconds`.
    func wait(for expression: String, seconds: TimeInterval) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if (try? await evaluate("!!(\(expression))")) as? Bool == true { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// The page's DOM as HTML, as the script left it (what `--dump-dom` prints).
    func dom() async throws -> String {
        try await evaluate("document.documentElement.outerHTML") as? String ?? ""
    }

    /// A PNG of the whole page at `width` CSS pixels (its height: the page's, at least `minimumHeight`).
    func screenshot(width: Int, minimumHeight: Int) async throws -> Data {
        let height = max(minimumHeight, (try await evaluate("document.documentElement.scrollHeight") as? Int) ?? minimumHeight)
        _ = try await call("Emulation.setDeviceMetricsOverride", ["width": width, "height": height, "deviceScaleFactor": 1, "mobile": false])
        let shot = try await call("Page.captureScreenshot", ["format": "png"])
        guard let base64 = shot["data"] as? String, let png = Data(base64Encoded: base64) else {
            throw Failure(description: "no screenshot")
        }
        return png
    }

    /// The browser's cookies for `url`, as the protocol describes them.
    func cookies(for url: String) async throws -> [[String: Any]] {
        try await call("Network.getCookies", ["urls": [url]])["cookies"] as? [[String: Any]] ?? []
    }

    /// Closes the browser, then ends its process group if anything of it is left, and removes its profile.
    func close() async {
        _ = try? await call("Browser.close", inPage: false)
        var exited = false
        for _ in 0..<50 {
            if waitpid(pid, nil, WNOHANG) == pid {
                exited = true
                break
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        if !exited {
            kill(-pid, SIGKILL)
            _ = waitpid(pid, nil, 0)
        }
        Glibc.close(commands)
        Glibc.close(answers)
        try? FileManager.default.removeItem(atPath: profile)
    }
}
