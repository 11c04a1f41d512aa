import CAMFACore
import Testing

@testable import CAMFADaemon

@Suite struct CheckpointScheduleTests {
    @Test func dueAfterTheIntervalOnlyWhenSomethingWasProcessed() {
        var s = CheckpointSchedule(interval: 5_000, events: 100, now: 1_000)
        #expect(!s.isDue(now: 100_000))
        s.processed()
        #expect(!s.isDue(now: 5_999))
        #expect(s.isDue(now: 6_000))
        s.taken(now: 6_000)
        #expect(!s.isDue(now: 20_000))
    }

    @Test func dueAfterTheEventCountBeforeTheInterval() {
        var s = CheckpointSchedule(interval: 60_000, events: 3, now: 0)
        s.processed(2)
        #expect(!s.isDue(now: 1))
        s.processed()
        #expect(s.isDue(now: 1))
        s.taken(now: 2)
        #expect(s.eventsSince == 0)
        #expect(!s.isDue(now: 3))
    }

    static func changes(_ full: Bool, upserts: [(String, String)] = [], deletes: [String] = [],
                        users: [(String, String)] = [], userDeletes: [String] = [], meta: UInt8 = 0) -> PartitionChanges {
        var c = PartitionChanges(full: full, metadata: [meta])
        c.upserts = upserts.map { ("ks", $0.0, Array($0.1.utf8)) }
        c.deletes = deletes.map { ("ks", $0) }
        c.userUpserts = users.map { ($0.0, Array($0.1.utf8)) }
        c.userDeletes = userDeletes
        return c
    }

    static func summary(_ c: PartitionChanges) -> [String] {
        c.upserts.map { "+\($0.key)=\(String(decoding: $0.value, as: UTF8.self))" }.sorted()
            + c.deletes.map { "-\($0.key)" }.sorted()
            + c.userUpserts.map { "+u:\($0.user)=\(String(decoding: $0.value, as: UTF8.self))" }.sorted()
            + c.userDeletes.map { "-u:\($0)" }.sorted()
    }

    @Test func aFailedWriteMergedWithTheNextKeepsEveryChangeAndTheNewestValue() {
        let failed = Self.changes(false, upserts: [("a", "1"), ("b", "1")], deletes: ["c"], users: [("u", "1")], userDeletes: ["v"], meta: 1)
        let next = Self.changes(false, upserts: [("a", "2"), ("c", "2")], deletes: ["b"], userDeletes: ["u"], meta: 2)
        let m = failed.merged(with: next)
        #expect(Self.summary(m) == ["+a=2", "+c=2", "-b", "-u:u", "-u:v"])
        #expect(m.metadata == [2])
        #expect(!m.full)
    }

    @Test func aFailedFullWriteStaysFullAndDropsDeletes() {
        let failed = Self.changes(true, upserts: [("a", "1"), ("b", "1")], users: [("u", "1")])
        let m = failed.merged(with: Self.changes(false, upserts: [("c", "1")], deletes: ["a"], userDeletes: ["u"]))
        #expect(m.full)
        #expect(Self.summary(m) == ["+b=1", "+c=1"])
        // A newer full change set replaces everything before it.
        let f = failed.merged(with: Self.changes(true, upserts: [("z", "9")]))
        #expect(Self.summary(f) == ["+z=9"])
    }
}
