import Testing
@testable import CAMFAStore

@Suite struct SortedKeysTests {
    /// Collects what SortedKeys hands to the binder, in order.
    private func visit(_ keys: SortedKeys) -> [(keyspace: String, key: String, index: Int)] {
        var seen: [(String, String, Int)] = []
        let rc = keys.forEach({ keyspace, key, index, _ in
            seen.append((String(decoding: keyspace, as: UTF8.self), String(decoding: key, as: UTF8.self), index))
            return 101
        }, done: 101)
        #expect(rc == 101)
        return seen.map { (keyspace: $0.0, key: $0.1, index: $0.2) }
    }

    @Test func ordersByKeyspaceThenKeyInUTF8ByteOrderAndKeepsTheLastDuplicate() {
        let input: [(keyspace: String, key: String)] = [
            ("user.ip", "b"),
            ("event.ip", "abcdefghZ"),        // same 8-byte prefix as the next two: memcmp decides
            ("event.ip", "abcdefgh"),
            ("event.ip", "abcdefgh\u{0}"),
            ("event.ip", "é"),                // 0xC3 0xA9 sorts after every ASCII key
            ("user.ip", "b"),                 // duplicate: this later one must win
            ("event.ip", "abcdefghA"),
            ("event.asn", "zz"),
            ("event.ip", ""),
        ]
        let keys = SortedKeys(count: input.count, group: { input[$0].keyspace }, key: { input[$0].key })
        let seen = visit(keys)
        #expect(seen.map(\.keyspace) == ["event.asn", "event.ip", "event.ip", "event.ip", "event.ip", "event.ip", "event.ip", "user.ip"])
        #expect(seen.map(\.key) == ["zz", "", "abcdefgh", "abcdefgh\u{0}", "abcdefghA", "abcdefghZ", "é", "b"])
        #expect(seen.last?.index == 5)
        #expect(Set(seen.map(\.index)).count == seen.count)
    }

    @Test func tablesWithoutKeyspacesSortByKeyAlone() {
        let users = ["mallory", "alice", "bob", "alice"]
        let seen = visit(SortedKeys(count: users.count, group: { _ in nil }, key: { users[$0] }))
        #expect(seen.map(\.key) == ["alice", "bob", "mallory"])
        #expect(seen.map(\.index) == [3, 2, 0])
        #expect(seen.allSatisfy { $0.keyspace.isEmpty })
    }

    @Test func emptyInputVisitsNothing() {
        let seen = visit(SortedKeys(count: 0, group: { _ in nil }, key: { _ in "" }))
        #expect(seen.isEmpty)
    }
}
