import Foundation

/// Search: the ids of users or networks whose metadata match an `IndexQuery`, in id order after a
/// cursor, found through the metadata tables' indexes:
///
///     <meta>(owner, key) primary key    <meta>(key, value, owner)    <meta>(key, num, owner)
///
/// A query is searched branch by branch (the operands of a top-level OR, else the whole query).
/// Each branch finds its candidates through one anchor, a term that all its matches satisfy
/// (numeric bounds on one key count as one range), and checks on each candidate only what the
/// anchor does not already guarantee (the residual), by primary-key lookups. Each branch yields its
/// first `need` ids after the cursor in id order, so that it stops early; an OR is the union of
/// its branches' first ids, of which the first `need` are the answer.
///
/// Which anchor, and how it is read: each anchor's candidates are counted through its index up to
/// `IndexQuery.collectLimit` (one statement for all), and the fewest decide, as in the
/// CHECKPOINT's index. An equality is walked in owner order through its (key, value, owner)
/// index, which stops after `need` matches; fewer than the limit of another kind (range, prefix,
/// presence) are collected and sorted; more are walked in owner order through the primary key,
/// reading each owner's row for the key. A branch without an anchor (`* AND NOT a=1`) walks the
/// entities. The counts are not needed for correctness, only for speed: every plan checks all the
/// branch requires.
extension IndexEngine {
    /// How one branch of a search finds its candidates.
    enum BranchPlan: Equatable {
        /// A required term has no match at all.
        case empty
        /// An equality: walk its (key, value, owner) index in owner order.
        case walk(IndexQuery.Anchor)
        /// Fewer than `IndexQuery.collectLimit` candidates: collect them through the anchor's
        /// index (key, value or num range), then sort them by owner.
        case collect(IndexQuery.Anchor)
        /// Many candidates and no equality among the anchors: walk the primary key (owner, key)
        /// in owner order, testing each owner's row for the anchor's key. The anchor's test is
        /// fenced (`IndexQuery.condition`) so that the database cannot read its (key, num) or
        /// (key, value) index instead and sort what may be most of the table.
        case ownerWalk(IndexQuery.Anchor)
        /// No anchor: walk the entities in id order, checking the whole branch on each.
        case scan
    }

    /// The SQL of the ids that `query` matches (every entity when nil) after `after`, in id order,
    /// at most `need`, as a subquery of one column (`id`), with its arguments; nil when nothing
    /// can match.
    func searchSource(_ db: any SQLConnection, entity: IndexEntity, query: IndexQuery?, after: Int64, need: Int) throws -> (String, [SQLValue])? {
        guard let query else {
            return ("SELECT e.id FROM \(entity.table) e WHERE e.id > ? ORDER BY e.id LIMIT ?", [.integer(after), .integer(Int64(need))])
        }
        let branches = query.branches
        let plans = try plan(db, entity: entity, branches: branches)
        if branches.count > 1, plans.contains(.scan) {
            // An unanchored branch walks the entities anyway: one walk checking the whole query
            // finds the first matches no later than that branch's own walk would.
            return branchSource(query.root, plan: .scan, entity: entity, dialect: db.dialect, after: after, need: need)
        }
        let parts = zip(branches, plans).compactMap { branch, plan in
            plan == .empty ? nil : branchSource(branch, plan: plan, entity: entity, dialect: db.dialect, after: after, need: need)
        }
        guard parts.count > 1 else { return parts.first }
        var sql = "SELECT id FROM ("
        var args: [SQLValue] = []
        for (i, part) in parts.enumerated() {
            sql += (i == 0 ? "" : " UNION ") + "SELECT id FROM (\(part.0)) AS b\(i)"
            args += part.1
        }
        sql += ") AS u ORDER BY id LIMIT ?"
        args.append(.integer(Int64(need)))
        return (sql, args)
    }

    /// One branch's first `need` ids after `after`, in id order.
    func branchSource(_ branch: IndexQuery.Node, plan: BranchPlan, entity: IndexEntity, dialect: SQLDialect,
                      after: Int64, need: Int) -> (String, [SQLValue]) {
        let owner = "w.\(entity.ownerColumn)"
        var args: [SQLValue] = []
        var sql: String
        let id: String
        let order: String
        let residual: IndexQuery.Node?
        switch plan {
        case .walk(let anchor), .collect(let anchor), .ownerWalk(let anchor):
            let walksOwners: Bool
            if case .ownerWalk = plan { walksOwners = true } else { walksOwners = false }
            // SQLite's unary plus keeps it off the (key, ...) indexes too; PostgreSQL tests the key
            // inside its primary key's index anyway.
            let key = walksOwners && dialect == .sqlite ? "+w.key" : "w.key"
            args.append(.text(anchor.key))
            let condition = anchor.condition(column: "w.", fenced: walksOwners, args: &args)
            sql = "SELECT \(owner) AS id FROM \(entity.metaTable) w WHERE \(key) = ?\(condition) AND \(owner) > ?"
            args.append(.integer(after))
            id = owner
            // Collected candidates are sorted: `+ 0` keeps the database from walking the primary
            // key in owner order instead, on an estimate, when the count says they are few.
            if case .collect = plan { order = "\(owner) + 0" } else { order = owner }
            residual = IndexQuery.residual(branch, after: anchor)
        case .scan, .empty:
            sql = "SELECT e.id AS id FROM \(entity.table) e WHERE e.id > ?"
            args.append(.integer(after))
            id = "e.id"
            order = "e.id"
            residual = branch
        }
        if let residual {
            let predicate = IndexQuery.predicate(residual, for: entity, id: id, dialect: dialect)
            sql += " AND \(predicate.sql)"
            args += predicate.args
        }
        sql += " ORDER BY \(order) LIMIT ?"
        args.append(.integer(Int64(need)))
        return (sql, args)
    }

    /// Each branch's plan. A branch whose only anchor is an equality walks it uncounted (nothing
    /// reads fewer rows in id order); the other anchors are counted, all in one statement.
    func plan(_ db: any SQLConnection, entity: IndexEntity, branches: [IndexQuery.Node]) throws -> [BranchPlan] {
        let cap = IndexQuery.collectLimit
        let anchors = branches.map(IndexQuery.anchors)
        var counts = anchors.map { Array(repeating: cap, count: $0.count) }
        var counted: [(branch: Int, anchor: Int)] = []
        for (b, list) in anchors.enumerated() where !(list.count == 1 && list[0].isEquality) {
            counted += list.indices.map { (b, $0) }
        }
        if !counted.isEmpty {
            var args: [SQLValue] = []
            let columns = counted.map { b, a -> String in
                let anchor = anchors[b][a]
                args.append(.text(anchor.key))
                let condition = anchor.condition(args: &args)
                args.append(.integer(Int64(cap)))
                return "(SELECT count(*) FROM (SELECT 1 FROM \(entity.metaTable) WHERE key = ?\(condition) LIMIT ?) AS c)"
            }
            guard let row = try db.row("SELECT " + columns.joined(separator: ", "), args), row.count == counted.count else {
                throw IndexError.storage("search: the candidate counts are missing")
            }
            for (i, (b, a)) in counted.enumerated() {
                guard let count = row[i].int64 else { throw IndexError.storage("search: a candidate count is not a number") }
                counts[b][a] = Int(count)
            }
        }
        return anchors.enumerated().map { b, list -> BranchPlan in
            guard !list.isEmpty else { return .scan }
            // The fewest candidates; an equality on a tie (it is walked in order).
            var best = 0
            for i in list.indices where counts[b][i] < counts[b][best]
                || (counts[b][i] == counts[b][best] && list[i].isEquality && !list[best].isEquality) {
                best = i
            }
            let anchor = list[best]
            if counts[b][best] == 0 { return .empty }
            if anchor.isEquality { return .walk(anchor) }
            if counts[b][best] < cap { return .collect(anchor) }
            return .ownerWalk(anchor)
        }
    }
}
