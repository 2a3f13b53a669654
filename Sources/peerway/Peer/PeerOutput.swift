import Foundation
import NIOConcurrencyHelpers
import PeerwayCheckpoint

/// Writes `peerway peer` lines, whole and unbuffered, from any task.
final class PeerOutput: Sendable {
    let json: Bool
    private let lock = NIOLock()

    init(json: Bool) { self.json = json }

    func emit(_ line: PeerOutputLine) {
        let text = line.render(json: json) + "\n"
        lock.withLock {
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }

    func emit(_ event: String, _ fields: [(String, JSONValue)], human: String) {
        emit(PeerOutputLine(event: event, fields: fields, human: human))
    }

    func error(_ message: String, command: String? = nil) {
        var fields: [(String, JSONValue)] = [("message", .string(message))]
        if let command { fields.append(("command", .string(command))) }
        emit("error", fields, human: "error: \(message)")
    }
}

extension JSONValue {
    static func metadata(_ m: PeerMetadata) -> JSONValue {
        .object(m.entries.map { ($0.key, .string($0.value)) })
    }

    static func endpoints(_ e: [PeerEndpoint]) -> JSONValue {
        .array(e.map { .string($0.description) })
    }
}

extension PeerMetadata {
    /// `k=v k2=v2`, for humans.
    var humanText: String {
        entries.isEmpty ? "(no metadata)" : entries.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }
}
