import Foundation
import Hummingbird
import PeerwayCheckpoint
import PeerwayIndex
import Testing
@testable import PeerwayIndexAPI

/// The OpenAPI document declares exactly what the server enforces: its limits come from the
/// named constants, its patterns accept exactly what the server's checks accept, undeclared
/// methods are 405 with `Allow`, and requests valid by the document are not refused as invalid.
@Suite("Management API: the document's contract is exact")
struct IndexAPIContractTests {
    static func document() throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(IndexAPIOpenAPI.document)) as? [String: Any])
    }

    static func component(_ kind: String, _ name: String) throws -> [String: Any] {
        let components = try #require(try document()["components"] as? [String: Any])
        return try #require((components[kind] as? [String: Any])?[name] as? [String: Any])
    }

    /// Whether the anchored `pattern` matches `text` as JSON Schema's ECMA-262 dialect does: ICU's
    /// `$` also matches before a final newline, ECMA's only at the end, so the match must cover all.
    static func matches(_ pattern: String, _ text: String) throws -> Bool {
        let regex = try NSRegularExpression(pattern: pattern)
        let all = NSRange(text.startIndex..., in: text)
        return regex.firstMatch(in: text, range: all)?.range == all
    }

    @Test("declared limits are the named constants")
    func limitsFromConstants() throws {
        let limit = try #require(try Self.component("parameters", "limit")["schema"] as? [String: Any])
        #expect(limit["minimum"] as? Int == 1)
        #expect(limit["maximum"] as? Int == IndexAPILimits.maximumListPage)
        let shortLimit = try #require(try Self.component("parameters", "shortLimit")["schema"] as? [String: Any])
        #expect(shortLimit["maximum"] as? Int == IndexAPILimits.maximumSearchPage)
        let q = try #require(try Self.component("parameters", "q")["schema"] as? [String: Any])
        #expect(q["maxLength"] as? Int == CheckpointQuery.maximumBytes)
        #expect(q["minLength"] as? Int == 1)
        #expect(q["format"] as? String == IndexAPIContract.queryFormat)

        let createUser = try #require(try Self.component("schemas", "CreateUser")["properties"] as? [String: [String: Any]])
        #expect(createUser["name"]?["minLength"] as? Int == IndexLimits.usernameBytes.lowerBound)
        #expect(createUser["name"]?["maxLength"] as? Int == IndexLimits.usernameBytes.upperBound)
        #expect(createUser["password"]?["minLength"] as? Int == IndexAPILimits.minimumPasswordCharacters)
        #expect(createUser["password"]?["x-maxBytes"] as? Int == IndexLimits.passwordBytes.upperBound)
        let metadata = try #require(createUser["metadata"])
        #expect(metadata["maxProperties"] as? Int == PeerMetadata.maximumEntries)
        #expect(metadata["x-maxTotalBytes"] as? Int == PeerMetadata.maximumTotalBytes)
        #expect((metadata["additionalProperties"] as? [String: Any])?["x-maxBytes"] as? Int == PeerMetadata.maximumValueBytes)
        #expect((metadata["propertyNames"] as? [String: Any])?["maxLength"] as? Int == PeerMetadata.maximumKeyBytes)
        let createNetwork = try #require(try Self.component("schemas", "CreateNetwork")["properties"] as? [String: [String: Any]])
        #expect(createNetwork["name"]?["maxLength"] as? Int == IndexLimits.networkNameBytes.upperBound)
    }

    @Test("the name and cursor patterns accept exactly what the server's checks accept")
    func patternsAgreeWithServer() throws {
        let names = ["abc", "a", "ab", "a.b", "0ab", "_ab", ".ab", "-ab", "Abc", "ab c", "abc\n", "ab/c", "äbc", "a-b_c.d",
                     String(repeating: "a", count: 32), String(repeating: "a", count: 33), String(repeating: "n", count: 64),
                     String(repeating: "n", count: 65), ""]
        for name in names {
            let username = IndexAPIContract.username
            let declared = try Self.matches(try #require(username["pattern"] as? String), name)
                && (IndexLimits.usernameBytes).contains(name.unicodeScalars.count)
            #expect(declared == ((try? IndexLimits.validate(username: name)) != nil), "username \(name.debugDescription)")
            let networkDeclared = try Self.matches(IndexAPIContract.namePattern, name)
                && IndexLimits.networkNameBytes.contains(name.unicodeScalars.count)
            #expect(networkDeclared == ((try? IndexLimits.validate(networkName: name)) != nil), "network name \(name.debugDescription)")
        }
        let cursors = ["1", "0", "123456789012345678", "1234567890123456789", "1.2", "1.2.3", "", ".", "1.", ".1", "a", "-1", "+1",
                       "1 ", "12.345678901234567890", "007"]
        for parts in [IndexAPILimits.listingCursorParts, IndexAPILimits.membershipCursorParts] {
            let pattern = IndexAPIContract.cursorPattern(parts: parts...parts)
            for cursor in cursors {
                let declared = try Self.matches(pattern, cursor)
                #expect(declared == IndexAPIContract.isCursor(cursor[...], parts: parts), "cursor \(cursor.debugDescription), \(parts) part(s)")
                if declared { #expect(IndexCursor(cursor) != nil, "\(cursor) is declared but does not parse") }
            }
        }
    }

    @Test("methods a path does not declare: 405 with Allow, before the token; unknown paths: 404")
    func methodNotAllowed() async throws {
        try await withAPI { api in
            let trace = try await api.call(.init("TRACE")!, "/v1/users")
            #expect(trace.status == 405)
            #expect(trace.headers[.allow] == "GET, POST")
            #expect(trace.errorCode == "method_not_allowed")
            let put = try await api.call(.put, "/v1/networks/lan/members/bob", token: nil)
            #expect(put.status == 405, "405 comes before the token check")
            #expect(put.headers[.allow] == "DELETE, GET, PATCH")
            let document = try await api.call(.post, "/openapi.json", token: nil)
            #expect(document.status == 405)
            #expect(document.headers[.allow] == "GET")
            let options = try await api.call(.options, "/v1/memberships")
            #expect(options.status == 405)
            #expect(options.headers[.allow] == "GET")
            #expect(try await api.call(.get, "/v1/nothing").status == 404)
            #expect(try await api.call(.get, "/v1/users/a/b/c").status == 404)
            // Every declared operation still reaches its route.
            #expect(try await api.get("/v1/memberships").status == 200)
        }
    }

    @Test("paging: cursors per listing, search pages clamped, parameters read as forms, given once")
    func paging() async throws {
        try await withAPI { api in
            for name in ["alice", "bob", "carol"] { try await api.createUser(name, metadata: ["team": "red plus"]) }
            try await api.createNetwork("lan", owner: "alice")
            #expect(try await api.get("/v1/users?after=1.2").errorCode == "invalid_cursor")
            #expect(try await api.get("/v1/users?after=1234567890123456789").errorCode == "invalid_cursor")
            #expect(try await api.get("/v1/users?after=").status == 200)
            #expect(try await api.get("/v1/memberships?after=1.2").status == 200)
            #expect(try await api.get("/v1/memberships?after=1").errorCode == "invalid_cursor")
            let page = try await api.get("/v1/memberships?limit=1&after=0.0")
            #expect(page.status == 200)
            #expect(try Self.matches(IndexAPIContract.cursorPattern(parts: 2...2), page.next ?? "1.1"))
            // A search asking for a listing's page size gets at most a search page.
            #expect(try await api.get("/v1/networks?q=*&limit=\(IndexAPILimits.maximumListPage)").status == 200)
            // Members and a user's networks take at most a search page.
            #expect(try await api.get("/v1/networks/lan/members?limit=\(IndexAPILimits.maximumSearchPage + 1)").errorCode == "invalid_page_size")
            #expect(try await api.get("/v1/users/alice/networks?limit=\(IndexAPILimits.maximumSearchPage)").status == 200)
            // `+` is a space (application/x-www-form-urlencoded), %2B a plus.
            #expect(try await api.get("/v1/users?q=team%3D%22red+plus%22+OR+team%3Dblue").names == ["alice", "bob", "carol"])
            #expect(try await api.get("/v1/users?q=team%3D%22red%2Bplus%22").names == [])
            #expect(try await api.get("/v1/users?limit=1&limit=2").errorCode == "invalid_parameter")
            #expect(try await api.get("/v1/users?q=%ZZ").errorCode == "invalid_parameter")
            #expect(try await api.get("/v1/users?q=").errorCode == "invalid_query")
            let longest = "team=red" + String(repeating: " ", count: IndexAPILimits.maximumQueryBytes - 8)
            #expect(try await api.get("/v1/users?q=" + longest.replacingOccurrences(of: " ", with: "+")
                .replacingOccurrences(of: "=", with: "%3D")).status == 200)
        }
    }

    @Test("bodies: null fields, short passwords, metadata changes (400 alone, 409 once merged)")
    func bodies() async throws {
        try await withAPI { api in
            let null = try await api.call(.post, "/v1/users", json: #"{"name":"alice","password":"password1","metadata":null}"#)
            #expect(null.status == 400)
            #expect(null.errorCode == "invalid_json")
            // Three emoji are 12 bytes but 3 characters: under the document's minLength.
            let short = try await api.call(.post, "/v1/users", json: #"{"name":"alice","password":"😀😀😀"}"#)
            #expect(short.errorCode == "invalid_password")
            let empty = try await api.call(.post, "/v1/users", json: #"{"name":"","password":"password1"}"#)
            #expect(empty.errorCode == "invalid_username")

            let full = Dictionary(uniqueKeysWithValues: (0..<PeerMetadata.maximumEntries).map { ("k\($0)", "v") })
            try await api.createUser("alice", metadata: full)
            let overflow = try await api.call(.patch, "/v1/users/alice", json: #"{"metadata":{"extra":"x"}}"#)
            #expect(overflow.status == 409, "\(overflow.text)")
            #expect(overflow.errorCode == "metadata_full")
            let swap = try await api.call(.patch, "/v1/users/alice", json: #"{"metadata":{"extra":"x","k0":null}}"#)
            #expect(swap.status == 200, "\(swap.text)")
            let tooMany = (0...PeerMetadata.maximumEntries).map { #""n\#($0)":"v""# }.joined(separator: ",")
            let alone = try await api.call(.patch, "/v1/users/alice", json: #"{"metadata":{\#(tooMany)}}"#)
            #expect(alone.status == 400)
            #expect(alone.errorCode == "invalid_metadata")
            let badKey = try await api.call(.patch, "/v1/users/alice", json: #"{"metadata":{"Bad":null}}"#)
            #expect(badKey.errorCode == "invalid_metadata")
            let nul = try await api.call(.patch, "/v1/users/alice", json: #"{"metadata":{"a":"x\u0000y"}}"#)
            #expect(nul.errorCode == "invalid_metadata")

            try await api.createNetwork("lan", owner: "alice", metadata: String(decoding: try JSONSerialization.data(withJSONObject: full), as: UTF8.self))
            let networkOverflow = try await api.call(.patch, "/v1/networks/lan", json: #"{"metadata":{"extra":"x"}}"#)
            #expect(networkOverflow.status == 409, "\(networkOverflow.text)")
            #expect(networkOverflow.errorCode == "metadata_full")
        }
    }
}
