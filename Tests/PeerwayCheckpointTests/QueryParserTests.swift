import Testing
@testable import PeerwayCheckpoint

@Suite("Query parser")
struct QueryParserTests {
    private func parse(_ text: String) throws -> QueryNode {
        try CheckpointQuery(parsing: text).root
    }

    private func error(_ text: String) -> QueryError? {
        do {
            _ = try CheckpointQuery(parsing: text)
            return nil
        } catch {
            return error
        }
    }

    private func term(_ key: String, _ test: QueryTest) -> QueryNode { .term(key: key, test: test) }

    @Test func everyOperator() throws {
        #expect(try parse("app=chat") == term("app", .equal("chat")))
        #expect(try parse("app!=chat") == term("app", .notEqual("chat")))
        #expect(try parse("region^=eu-") == term("region", .prefix("eu-")))
        #expect(try parse("age>30") == term("age", .greater(30)))
        #expect(try parse("age>=30") == term("age", .greaterOrEqual(30)))
        #expect(try parse("age<-2.5") == term("age", .less(-2.5)))
        #expect(try parse("age<=1e3") == term("age", .lessOrEqual(1000)))
        #expect(try parse("nick?") == term("nick", .present))
        #expect(try parse("*") == .all)
    }

    @Test func bareWordsAndWhitespace() throws {
        #expect(try parse("  url = http://x.example/a_b-c:1@d+e  ")
            == term("url", .equal("http://x.example/a_b-c:1@d+e")))
        #expect(try parse("k=UPPER") == term("k", .equal("UPPER")))
        #expect(try parse("a=1\tAND\nb?") == .and([term("a", .equal("1")), term("b", .present)]))
        #expect(try parse("n >= +5") == term("n", .greaterOrEqual(5)))
    }

    @Test func quotedStringsAndEscapes() throws {
        #expect(try parse(#"name="Ann Lee""#) == term("name", .equal("Ann Lee")))
        #expect(try parse(#"name="say \"hi\" \\ bye""#) == term("name", .equal(#"say "hi" \ bye"#)))
        #expect(try parse(#"name="""#) == term("name", .equal("")))
        #expect(try parse(#"city="Zürich (ZH)""#) == term("city", .equal("Zürich (ZH)")))
        #expect(try parse(#"name^="a AND b""#) == term("name", .prefix("a AND b")))
        #expect(try parse(#"age>"42""#) == term("age", .greater(42)))
    }

    @Test func precedenceAndParentheses() throws {
        let a = term("a", .equal("1")), b = term("b", .equal("2")), c = term("c", .equal("3"))
        #expect(try parse("a=1 OR b=2 AND c=3") == .or([a, .and([b, c])]))
        #expect(try parse("a=1 AND b=2 OR c=3") == .or([.and([a, b]), c]))
        #expect(try parse("(a=1 OR b=2) AND c=3") == .and([.or([a, b]), c]))
        #expect(try parse("a=1 && (b=2 || c=3)") == .and([a, .or([b, c])]))
        #expect(try parse("a=1 and b=2 Or c=3") == .or([.and([a, b]), c]))
        #expect(try parse("((a=1))") == a)
        #expect(try parse("a=1 AND b=2 AND c=3") == .and([a, b, c]))
        #expect(try parse("a=1 OR (b=2 OR c=3)") == .or([a, b, c]))
        #expect(try parse("a=1 AND NOT b=2") == .and([a, .not(b)]))
        #expect(try parse("a=1 AND not (b=2 OR c=3)") == .and([a, .not(.or([b, c]))]))
        #expect(try parse("a=1 AND NOT NOT b=2") == .and([a, .not(.not(b))]))
    }

    @Test func keywordsSpelledAsKeys() throws {
        #expect(try parse("and=1 AND or? OR not!=x")
            == .or([.and([term("and", .equal("1")), term("or", .present)]), term("not", .notEqual("x"))]))
        #expect(try parse("not = 1") == term("not", .equal("1")))
        #expect(try parse("a=AND") == term("a", .equal("AND")))
    }

    @Test func negationNeedsAPositiveTerm() throws {
        #expect(try parse("a!=1") == term("a", .notEqual("1")))
        #expect(try parse("* AND NOT a=1") == .and([.all, .not(term("a", .equal("1")))]))
        #expect(try parse("(a=1 OR c?) AND NOT b=2").isAnchored)
        #expect(error("NOT a=1") == QueryError(.noPositiveTerm, at: 0))
        #expect(error("NOT a=1 AND NOT b=1") == QueryError(.noPositiveTerm, at: 0))
        #expect(error("a=1 OR NOT b=2") == QueryError(.noPositiveTerm, at: 7))
        #expect(error("a=1 OR (c=1 AND NOT b=2) OR (NOT d=1)") == QueryError(.noPositiveTerm, at: 29))
    }

    @Test func errorsCarryTheirOffset() {
        let cases: [(String, QueryError)] = [
            ("region=", QueryError(.expected("a value after '='"), at: 7)),
            ("region= )", QueryError(.expected("a value after '='"), at: 8)),
            ("a^=", QueryError(.expected("a value after '^='"), at: 3)),
            ("Region=eu", QueryError(.badKey("Region"), at: 0)),
            ("a=1 OR r:x=1", QueryError(.badKey("r:x"), at: 7)),
            ("age>abc", QueryError(.notANumber(op: ">", found: "abc"), at: 4)),
            ("age<=inf", QueryError(.notANumber(op: "<=", found: "inf"), at: 5)),
            ("age>=1e999", QueryError(.notANumber(op: ">=", found: "1e999"), at: 5)),
            ("age<", QueryError(.expected("a value after '<'"), at: 4)),
            (#"name="abc"#, QueryError(.unterminatedString, at: 5)),
            (#"name="a\x""#, QueryError(.badEscape, at: 7)),
            (##"name="a\""##, QueryError(.unterminatedString, at: 5)),
            (#"name="a\"#, QueryError(.badEscape, at: 7)),
            ("a=1 b=2", QueryError(.expected("AND, OR or the end of the query"), at: 4)),
            ("a=1)", QueryError(.expected("AND, OR or the end of the query"), at: 3)),
            ("(a=1", QueryError(.expected("AND, OR or ')' (to close the '(' at offset 0)"), at: 4)),
            ("a=1 AND", QueryError(.expected("a term (key and comparison, '*', '(' or NOT)"), at: 7)),
            ("a=1 AND OR b=1", QueryError(.expected("a term (key and comparison, '*', '(' or NOT)"), at: 8)),
            ("", QueryError(.expected("a term (key and comparison, '*', '(' or NOT)"), at: 0)),
            ("()", QueryError(.expected("a term (key and comparison, '*', '(' or NOT)"), at: 1)),
            ("a", QueryError(.expected("a comparison (= != ^= < <= > >= ?) after 'a'"), at: 1)),
            ("a !x", QueryError(.expected("a comparison (= != ^= < <= > >= ?) after 'a'"), at: 2)),
            ("a=1 & b=2", QueryError(.expected("AND, OR or the end of the query"), at: 4)),
        ]
        for (text, expected) in cases {
            #expect(error(text) == expected, "\(text)")
        }
        #expect(error("region=")?.description == "query: expected a value after '=' at offset 7")
        #expect(error("age>abc")?.description == "query: expected a finite number after '>', found 'abc' at offset 4")
        #expect(error("NOT a=1")?.description
            == "query: expected a positive term (key=value, key?, ...) combined by AND, which NOT only narrows at offset 0")
        #expect(error("(a?")?.description == "query: expected AND, OR or ')' (to close the '(' at offset 0) at offset 3")
    }

    @Test func valueLimit() throws {
        let longest = String(repeating: "v", count: PeerMetadata.maximumValueBytes)
        #expect(try parse("k=" + longest) == term("k", .equal(longest)))
        #expect(error("k=" + longest + "v") == QueryError(.valueTooLong(bytes: 129), at: 2))
        #expect(error("k=\"" + longest + "\\\\\"") == QueryError(.valueTooLong(bytes: 129), at: 2))
    }

    @Test func lengthLimit() throws {
        let value = String(repeating: "v", count: 100)
        var text = "k=\(value) OR k=\(value) OR k=\(value) OR k=\(value)"
        text += String(repeating: " ", count: CheckpointQuery.maximumBytes - text.utf8.count)
        #expect(text.utf8.count == CheckpointQuery.maximumBytes)
        _ = try parse(text)
        #expect(error(text + " ") == QueryError(.tooLong(bytes: 513), at: 512))
    }

    @Test func depthLimit() throws {
        let depth = CheckpointQuery.maximumDepth
        _ = try parse(String(repeating: "(", count: depth) + "a?" + String(repeating: ")", count: depth))
        #expect(error(String(repeating: "(", count: depth + 1) + "a?" + String(repeating: ")", count: depth + 1))
            == QueryError(.tooDeep, at: depth))
        _ = try parse("a? AND " + String(repeating: "NOT ", count: depth) + "b?")
        #expect(error("a? AND " + String(repeating: "NOT ", count: depth + 1) + "b?")
            == QueryError(.tooDeep, at: 7 + 4 * depth))
    }

    @Test func termLimit() throws {
        let terms = (0..<CheckpointQuery.maximumTerms).map { "k\($0)?" }
        _ = try parse(terms.joined(separator: " OR "))
        let text = (terms + ["*"]).joined(separator: " OR ")
        #expect(error(text) == QueryError(.tooManyTerms, at: text.utf8.count - 1))
    }

    @Test func descriptionParsesBack() throws {
        for text in ["a=1", #"n="x \"y\" \\""#, "a>1.5 AND (b^=x OR c?) AND NOT d<=-2", "* AND NOT x!=y",
                     "(a=1 OR b=2) AND (c=3 OR d=4)"] {
            let query = try CheckpointQuery(parsing: text)
            #expect(try CheckpointQuery(parsing: query.description) == query, "\(text) -> \(query)")
        }
    }

    @Test func referenceSemantics() throws {
        func matches(_ query: String, _ metadata: [String: String]) throws -> Bool {
            try CheckpointQuery(parsing: query).matches(PeerMetadata(metadata))
        }
        #expect(try matches("score>5", ["score": "5.5"]))
        #expect(try !matches("score>5", ["score": "5"]))
        #expect(try matches("score>=5", ["score": "5.0"]))
        #expect(try !matches("score=5", ["score": "5.0"]))
        #expect(try !matches("score<5", ["score": "abc"]))
        #expect(try !matches("score<5", ["score": "-inf"]))
        #expect(try !matches("score>5", ["score": "nan"]))
        #expect(try matches("score<5", ["score": "-1e300"]))
        #expect(try !matches("score<5", ["score": " 1"]))
        #expect(try matches("a^=eu-", ["a": "eu-7"]))
        #expect(try matches("a^=\"\"", ["a": ""]))
        #expect(try !matches("a^=eu-", ["a": "eu"]))
        #expect(try matches("a!=x", ["a": "y"]))
        #expect(try !matches("a!=x", ["b": "y"]))
        #expect(try !matches("a!=x", ["a": "x"]))
        #expect(try matches("a?", ["a": ""]))
        #expect(try matches("*", [:]))
        // Bytes, not Unicode canonical equivalence: precomposed é is not e + combining accent.
        #expect(try !matches("a=\"\u{E9}\"", ["a": "e\u{301}"]))
        #expect(try !matches("a^=e", ["a": "\u{E9}"]))
        #expect(try matches("a^=e", ["a": "e\u{301}"]))
        #expect(try matches("a=1 OR b=2 AND c=3", ["a": "1"]))
        #expect(try !matches("(a=1 OR b=2) AND c=3", ["a": "1"]))
        #expect(try matches("a=1 AND NOT b?", ["a": "1"]))
    }
}
