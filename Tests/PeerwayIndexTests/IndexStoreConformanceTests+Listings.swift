import Foundation
import PeerwayCheckpoint
import Testing
@testable import PeerwayIndex

/// Conformance: listings, paged in id order with cursors.
extension IndexStoreConformanceTests {
    // MARK: Paging

    @Test(arguments: StoreKind.allCases)
    func pagesWalkEverythingOnceInOrder(kind: StoreKind) async throws {
        try await withStore(kind) { store, _ in
            var users: [IndexUser] = []
            for i in 0..<23 {
                users.append(try await store.createUser(name: "user\(i)", password: "password1", metadata: ["n": "\(i)", "all": "yes"]))
            }
            let net = try await store.createNetwork(name: "everyone", owner: users[0].id, access: .open, metadata: [:], by: .user(users[0].id))
            for user in users.dropFirst() { _ = try await store.join(net.id, user: user.id, by: .user(user.id)) }

            var seen: [UserID] = []
            var cursor: IndexCursor?
            var pages = 0
            repeat {
                let page = try await store.listUsers(after: cursor, limit: 10)
                seen += page.items.map(\.id)
                cursor = page.next
                pages += 1
            } while cursor != nil && pages < 10
            #expect(seen == users.map(\.id))
            #expect(pages == 3)

            seen = []
            cursor = nil
            pages = 0
            repeat {
                let page = try await store.searchUsers(IndexQuery(parsing: "all=yes"), after: cursor, limit: 7)
                seen += page.items.map(\.id)
                cursor = page.next.flatMap { IndexCursor($0.description) }  // cursors survive their text form
                pages += 1
            } while cursor != nil && pages < 10
            #expect(seen == users.map(\.id))
            #expect(pages == 4)

            var members: [UserID] = []
            cursor = nil
            pages = 0
            repeat {
                let page = try await store.members(of: net.id, after: cursor, limit: 5)
                members += page.items.map(\.user)
                cursor = page.next
                pages += 1
            } while cursor != nil && pages < 10
            #expect(members == users.map(\.id))

            var memberships: [IndexMembership] = []
            cursor = nil
            pages = 0
            repeat {
                let page = try await store.listMemberships(after: cursor, limit: 6)
                memberships += page.items
                cursor = page.next
                pages += 1
            } while cursor != nil && pages < 10
            #expect(memberships.map(\.user) == users.map(\.id))
            #expect(Set(memberships.map(\.network)) == [net.id])

            // An exact fit ends without an empty extra page.
            let exact = try await store.listUsers(after: nil, limit: 23)
            #expect(exact.items.count == 23 && exact.next == nil)

            await expectRefusal(.invalidPageSize(0, maximum: IndexLimits.maximumListPage)) { () async throws(IndexError) in
                try await store.listUsers(after: nil, limit: 0)
            }
            await expectRefusal(.invalidPageSize(101, maximum: IndexLimits.maximumSearchPage)) { () async throws(IndexError) in
                try await store.searchUsers(IndexQuery(parsing: "*"), after: nil, limit: 101)
            }
            await expectRefusal(.invalidCursor("1.2")) { () async throws(IndexError) in
                try await store.listUsers(after: IndexCursor("1.2"), limit: nil)
            }
            await expectRefusal(.invalidCursor("5")) { () async throws(IndexError) in
                try await store.listMemberships(after: IndexCursor("5"), limit: nil)
            }
            #expect(IndexCursor("x") == nil && IndexCursor("-1") == nil && IndexCursor("") == nil)
        }
    }
}
