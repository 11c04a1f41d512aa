import Foundation
import Testing
@testable import CAMFAStore

private let logins = PartitionID(topic: "logins", partition: 3)

/// A partition's base (segments of its last full checkpoint) and the rows stored on top.
@Suite struct SegmentTests {
    @Test func aFullWriteStoresItsSegmentsInOrderAndReplacesTheOldBase() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        let first = (0..<5).map { bytes($0, count: 3_000 + $0) }
        try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 10, metadata: [1],
                                        upserts: [("event.ip", "a", [1])], full: true, segments: first))
        var loaded = try #require(try store.load(logins))
        #expect(loaded.segments == first)
        #expect(loaded.entries.map(\.key) == ["a"])

        let second = [bytes(99, count: 2 << 20), bytes(98, count: 10)]  // larger than a page, and tiny
        try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 20, metadata: [2], full: true, segments: second))
        loaded = try #require(try store.load(logins))
        #expect(loaded.segments == second)
        #expect(loaded.entries.isEmpty, "a full write empties the rows of the previous base")
        #expect(loaded.nextOffset == 20)
    }

    @Test func deletesOnTopOfABaseBecomeTombstonesAndWithoutOneRemoveTheRow() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        let other = PartitionID(topic: "logins", partition: 4)
        try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 1, metadata: [1], full: true, segments: [[7, 7]]))
        try store.write(CheckpointWrite(partition: other, epoch: 1, nextOffset: 1, metadata: [1],
                                        upserts: [("event.ip", "x", [1])], userUpserts: [("u", [2])], full: true))
        for p in [logins, other] {
            try store.write(CheckpointWrite(partition: p, epoch: 1, nextOffset: 2, metadata: [1],
                                            upserts: [("event.ip", "y", [3])], deletes: [("event.ip", "x")], userDeletes: ["u"]))
        }
        let based = try #require(try snapshot(store, logins))
        #expect(based.entries == [Entry(keyspace: "event.ip", key: "x", value: []), Entry(keyspace: "event.ip", key: "y", value: [3])])
        #expect(based.users == [UserRow(user: "u", value: [])])
        #expect(try store.load(logins)?.segments == [[7, 7]])
        let plain = try #require(try snapshot(store, other))
        #expect(plain.entries == [Entry(keyspace: "event.ip", key: "y", value: [3])])
        #expect(plain.users.isEmpty)

        // A key written again after its tombstone is a value again.
        try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 3, metadata: [1], upserts: [("event.ip", "x", [4])]))
        #expect(try snapshot(store, logins)?.entries.first == Entry(keyspace: "event.ip", key: "x", value: [4]))
    }

    @Test func dropRemovesTheBaseToo() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 5, metadata: [1], full: true, segments: [[1], [2]]))
        #expect(try store.drop(logins))
        #expect(try store.load(logins) == nil)
        try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 6, metadata: [1], upserts: [("event.ip", "a", [1])]))
        #expect(try store.load(logins)?.segments == [])
    }

    @Test func aDamagedOrMissingSegmentIsReportedAsCorrupt() throws {
        let dir = TempDirectory()
        let marker = Array("camfa-segment-checksum-marker-0123456789abcdefghijklmnopqrstuvwxyz".utf8)
        do {
            let store = try CheckpointStore(directory: dir.path)
            try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 1, metadata: [1],
                                            full: true, segments: [[1, 2, 3], marker, [4]]))
            store.close()
        }
        try flipBit(in: dir.database, at: 20, into: marker)
        let store = try CheckpointStore(directory: dir.path)
        let error = #expect(throws: StoreError.self) { _ = try store.load(logins) }
        #expect(error?.code == .corrupt)
        #expect(error?.message.contains("segment 1") == true)

        // A gap in the sequence, or missing last segments (rows deleted by hand), are damage too.
        for seq in [1, 2] {
            try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 2, metadata: [1], full: true, segments: [[1], [2], [3]]))
            _ = try store.writerIntegerForTesting("DELETE FROM segments WHERE seq = \(seq) RETURNING 0")
            let lost = #expect(throws: StoreError.self, "segment \(seq) deleted") { _ = try store.load(logins) }
            #expect(lost?.code == .corrupt)
        }
    }

    @Test func aVersion1FileIsUpgradedInPlaceAndKeepsItsRows() throws {
        let dir = TempDirectory()
        do {
            let store = try CheckpointStore(directory: dir.path)
            try store.write(CheckpointWrite(partition: logins, epoch: 3, nextOffset: 42, metadata: [1],
                                            upserts: [("event.ip", "a", [1])], userUpserts: [("u", [2])], full: true))
            // What a version 1 file looks like: no segments table, user_version 1.
            _ = try store.writerIntegerForTesting("DROP TABLE segments")
            _ = try store.writerIntegerForTesting("PRAGMA user_version = 1")
            store.close()
        }
        let store = try CheckpointStore(directory: dir.path)
        #expect(try store.writerIntegerForTesting("PRAGMA user_version") == Schema.version)
        let loaded = try #require(try snapshot(store, logins))
        #expect(loaded.entries == [Entry(keyspace: "event.ip", key: "a", value: [1])])
        #expect(loaded.users == [UserRow(user: "u", value: [2])])
        #expect(loaded.nextOffset == 42)
        try store.write(CheckpointWrite(partition: logins, epoch: 3, nextOffset: 43, metadata: [1], full: true, segments: [[5]]))
        #expect(try store.load(logins)?.segments == [[5]])
    }
}

extension SegmentTests {
    /// Version 3: the changelog marker a checkpoint matches is stored with it and kept by
    /// writes that do not name one (a rebase); version 2 files get the columns on open.
    @Test func theChangelogPositionIsStoredAndAVersion2FileIsUpgraded() throws {
        let dir = TempDirectory()
        do {
            let store = try CheckpointStore(directory: dir.path)
            try store.write(CheckpointWrite(partition: logins, epoch: 3, nextOffset: 42, metadata: [1], upserts: [("event.ip", "a", [1])],
                                            full: true, changelog: ChangelogPosition(seq: 7, offset: 99)))
            #expect(try store.load(logins)?.changelog == ChangelogPosition(seq: 7, offset: 99))
            // A rebase rewrites the state without naming a changelog marker.
            try store.write(CheckpointWrite(partition: logins, epoch: 3, nextOffset: 42, metadata: [1], full: true, segments: [[9]]))
            #expect(try store.load(logins)?.changelog == ChangelogPosition(seq: 7, offset: 99))
            // What a version 2 file looks like: no changelog columns, user_version 2.
            _ = try store.writerIntegerForTesting("ALTER TABLE partitions DROP COLUMN changelog_seq")
            _ = try store.writerIntegerForTesting("ALTER TABLE partitions DROP COLUMN changelog_offset")
            _ = try store.writerIntegerForTesting("PRAGMA user_version = 2")
            store.close()
        }
        let store = try CheckpointStore(directory: dir.path)
        #expect(try store.writerIntegerForTesting("PRAGMA user_version") == Schema.version)
        let loaded = try #require(try store.load(logins))
        #expect(loaded.changelog == nil && loaded.nextOffset == 42)
        try store.write(CheckpointWrite(partition: logins, epoch: 3, nextOffset: 43, metadata: [1], changelog: ChangelogPosition(seq: 8, offset: 120)))
        #expect(try store.load(logins)?.changelog == ChangelogPosition(seq: 8, offset: 120))
    }
}
