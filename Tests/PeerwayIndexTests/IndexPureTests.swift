import Foundation
import PeerwayCheckpoint
import Testing
@testable import PeerwayIndex

@Suite("IndexPolicy")
struct IndexPolicyTests {
    let a = UserID(1), b = UserID(2), n = NetworkID(9)

    @Test func usersActOnlyForThemselves() throws {
        try IndexPolicy.mayActAs(.user(a), user: a)
        try IndexPolicy.mayActAs(.administrator, user: a)
        #expect(throws: IndexError.notYourRecord(actor: .user(b), user: a)) { try IndexPolicy.mayActAs(.user(b), user: a) }
    }

    @Test func ownersAndAdminsManageMembers() throws {
        try IndexPolicy.mayManageMembers(.user(a), role: .owner, network: n)
        try IndexPolicy.mayManageMembers(.user(a), role: .admin, network: n)
        try IndexPolicy.mayManageMembers(.administrator, role: nil, network: n)
        #expect(throws: IndexError.notNetworkManager(actor: .user(a), network: n)) { try IndexPolicy.mayManageMembers(.user(a), role: .member, network: n) }
        #expect(throws: IndexError.notNetworkManager(actor: .user(a), network: n)) { try IndexPolicy.mayManageMembers(.user(a), role: nil, network: n) }
    }

    @Test func removal() throws {
        try IndexPolicy.mayRemove(.user(a), role: .owner, user: b, role: .admin, network: n)
        try IndexPolicy.mayRemove(.user(a), role: .admin, user: b, role: .member, network: n)
        try IndexPolicy.mayRemove(.user(b), role: .member, user: b, role: .member, network: n)  // leaving
        #expect(throws: IndexError.adminCannotManageAdmin(network: n, user: b)) { try IndexPolicy.mayRemove(.user(a), role: .admin, user: b, role: .admin, network: n) }
        #expect(throws: IndexError.cannotRemoveOwner(n)) { try IndexPolicy.mayRemove(.administrator, role: nil, user: b, role: .owner, network: n) }
        #expect(throws: IndexError.notNetworkManager(actor: .user(a), network: n)) { try IndexPolicy.mayRemove(.user(a), role: .member, user: b, role: .member, network: n) }
    }

    @Test func ownership() throws {
        try IndexPolicy.mayOwn(.user(a), role: .owner, network: n)
        try IndexPolicy.mayOwn(.administrator, role: nil, network: n)
        #expect(throws: IndexError.notNetworkOwner(actor: .user(a), network: n)) { try IndexPolicy.mayOwn(.user(a), role: .admin, network: n) }
        #expect(throws: IndexError.ownerCannotLeave(n)) { try IndexPolicy.mayLeave(role: .owner, network: n) }
        try IndexPolicy.mayLeave(role: .admin, network: n)
        #expect(throws: IndexError.invalidRole("owner")) { try IndexPolicy.maySetRole(.user(a), role: .owner, target: .member, to: .owner, network: n) }
        #expect(throws: IndexError.inviteOnly(n)) { try IndexPolicy.mayJoin(access: .inviteOnly, invited: false, network: n) }
        try IndexPolicy.mayJoin(access: .inviteOnly, invited: true, network: n)
        #expect(throws: IndexError.ownsNetworks(user: a, count: 2)) { try IndexPolicy.mayDelete(user: a, ownedNetworks: 2) }
    }

    @Test func everyRefusalSaysWhatToDo() {
        let errors: [IndexError] = [
            .ownerCannotLeave(n), .inviteOnly(n), .notNetworkManager(actor: .user(a), network: n), .usernameTaken("x"),
            .tooManyNetworks(user: a, limit: 256), .rateLimited(retryAfterSeconds: 3), .ownsNetworks(user: a, count: 1),
        ]
        for error in errors {
            #expect(error.description.contains(":") || error.description.contains("ask"), "\(error)")
        }
        #expect(IndexError.ownerCannotLeave(n).description.contains("transfer ownership"))
    }
}

@Suite("IndexLimits")
struct IndexLimitsTests {
    @Test func names() throws {
        for good in ["abc", "alice_1", "a.b-c", String(repeating: "a", count: 32), "0day"] { try IndexLimits.validate(username: good) }
        for bad in ["ab", "Alice", "_x1", ".abc", "a b c", "é-abc", String(repeating: "a", count: 33), ""] {
            #expect(throws: IndexError.invalidUsername(bad)) { try IndexLimits.validate(username: bad) }
        }
        try IndexLimits.validate(networkName: String(repeating: "n", count: 64))
        #expect(throws: IndexError.self) { try IndexLimits.validate(networkName: String(repeating: "n", count: 65)) }
        #expect(throws: IndexError.invalidPassword(bytes: 1025)) { try IndexLimits.validate(password: String(repeating: "p", count: 1025)) }
    }

    @Test func metadataFollowsPeerMetadataPlusNoNUL() throws {
        #expect(try IndexLimits.validate(metadata: ["a": "1"]).dictionary == ["a": "1"])
        #expect(throws: IndexError.self) { try IndexLimits.validate(metadata: ["a": "\u{0}"]) }
        #expect(throws: IndexError.self) { try IndexLimits.validate(metadata: ["A": "1"]) }
        let applied = try IndexLimits.apply(["b": "2", "a": nil], to: try PeerMetadata(["a": "1"]))
        #expect(applied.dictionary == ["b": "2"])
    }

    @Test func pageSizes() throws {
        #expect(try IndexLimits.pageSize(nil, maximum: 100) == 20)
        #expect(try IndexLimits.pageSize(nil, default: 100, maximum: 1000) == 100)
        #expect(throws: IndexError.invalidPageSize(-1, maximum: 100)) { try IndexLimits.pageSize(-1, maximum: 100) }
    }
}

@Suite("PasswordHasher")
struct PasswordHasherTests {
    @Test func recordsVerifyAndRoundTrip() throws {
        let hasher = PasswordHasher.testing
        let record = try hasher.record(for: "hunter22")
        #expect(try PasswordHasher.verify("hunter22", against: record))
        #expect(!(try PasswordHasher.verify("hunter23", against: record)))
        let parsed = try #require(PasswordRecord(parsing: record.description))
        #expect(parsed == record)
        #expect(try hasher.record(for: "hunter22") != record)  // fresh salt
        #expect(record.description.hasPrefix("scrypt$10$8$1$"))
    }

    @Test func malformedRecordsAreRefused() {
        for bad in ["", "scrypt$10$8$1$AAAA", "bcrypt$10$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==", "scrypt$40$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA=="] {
            #expect(PasswordRecord(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test func constantTimeComparison() {
        #expect(PasswordHasher.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!PasswordHasher.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!PasswordHasher.constantTimeEqual([1, 2, 3], [1, 2]))
    }

    @Test func interactiveCostIsMemoryHard() throws {
        #expect(PasswordHasher.interactive.logN >= 14)
        let record = try PasswordHasher.interactive.record(for: "a real password")
        #expect(try PasswordHasher.verify("a real password", against: record))
    }
}

@Suite("LoginLimiter")
struct LoginLimiterTests {
    let start = ContinuousClock.now

    @Test func perUserBurstThenRefill() throws {
        var limiter = LoginLimiter<String>(perUser: .init(burst: 3, refill: .seconds(10)), perSource: .init(burst: 100, refill: .seconds(1)))
        for _ in 0..<3 {
            try limiter.check(user: "alice", source: "s1", now: start)
            limiter.recordFailure(user: "alice", source: "s1", now: start)
        }
        #expect(throws: IndexError.rateLimited(retryAfterSeconds: 10)) { try limiter.check(user: "alice", source: "s2", now: start) }
        try limiter.check(user: "bob", source: "s1", now: start)
        #expect(throws: IndexError.rateLimited(retryAfterSeconds: 5)) { try limiter.check(user: "alice", source: "s1", now: start + .seconds(5)) }
        try limiter.check(user: "alice", source: "s1", now: start + .seconds(10))
    }

    @Test func perSourceLimitsGuessingManyUsers() throws {
        var limiter = LoginLimiter<String>(perUser: .init(burst: 100, refill: .seconds(1)), perSource: .init(burst: 2, refill: .seconds(4)))
        limiter.recordFailure(user: "u1", source: "attacker", now: start)
        limiter.recordFailure(user: "u2", source: "attacker", now: start)
        #expect(throws: IndexError.rateLimited(retryAfterSeconds: 4)) { try limiter.check(user: "u3", source: "attacker", now: start) }
        try limiter.check(user: "u3", source: "friend", now: start)
    }

    @Test func successForgivesTheUserNotTheSource() throws {
        var limiter = LoginLimiter<Int>(perUser: .init(burst: 1, refill: .seconds(60)), perSource: .init(burst: 1, refill: .seconds(60)))
        limiter.recordFailure(user: "alice", source: 1, now: start)
        limiter.recordSuccess(user: "alice", source: 1, now: start)
        try limiter.check(user: "alice", source: 2, now: start)
        #expect(throws: IndexError.self) { try limiter.check(user: "alice", source: 1, now: start) }
    }

    @Test func tablesStayBounded() {
        var limiter = LoginLimiter<Int>(maximumTracked: 50)
        for i in 0..<1000 { limiter.recordFailure(user: "user\(i)", source: i, now: start + .milliseconds(i)) }
        #expect(limiter.trackedCount.users <= 50 && limiter.trackedCount.sources <= 50)
    }
}

@Suite("IndexQuery and IndexCursor")
struct IndexQueryTests {
    @Test func translationBindsEveryValue() throws {
        let query = try IndexQuery(parsing: "name=\"x'; DROP TABLE users; --\" AND age>30 AND NOT city^=par")
        let (sql, args) = query.predicate(for: .users, id: "e.id")
        #expect(!sql.contains("DROP"))
        #expect(!sql.contains("'"))
        #expect(sql.filter { $0 == "?" }.count == args.count)
        #expect(args.contains(.text("x'; DROP TABLE users; --")))
        #expect(args.contains(.real(30)))
    }

    @Test func everyShapeReadsBack() throws {
        for text in ["*", "a=1", "a!=\"x y\"", "a^=\"\\\\\"", "a>1e300", "a<=-0.5", "a?", "a=1 OR b=2 OR c?",
                     "(a=1 OR b=2) AND NOT (c=3 AND d?)", "* AND NOT NOT a=1"] {
            let query = try IndexQuery(parsing: text)
            #expect(query.description == (try CheckpointQuery(parsing: text)).description)
        }
    }

    @Test func prefixCeilingCoversEveryValue() {
        let ceiling = "par" + IndexQuery.prefixCeiling
        #expect(Array(("par" + String(repeating: "\u{10FFFF}", count: 31) + "z").utf8).lexicographicallyPrecedes(Array(ceiling.utf8)))
        #expect(Array(("par" + String(repeating: "\u{10FFFF}", count: 2) + "x").utf8).lexicographicallyPrecedes(Array(ceiling.utf8)))
        #expect(IndexQuery.prefixCeiling.utf8.count == IndexLimits.metadataValueBytes)
    }

    @Test func cursors() {
        #expect(IndexCursor("12")?.description == "12")
        #expect(IndexCursor("3.4")?.description == "3.4")
        for bad in ["", "a", "1.2.3", "-4", "1.", "99999999999999999999"] { #expect(IndexCursor(bad) == nil, "\(bad)") }
    }
}
