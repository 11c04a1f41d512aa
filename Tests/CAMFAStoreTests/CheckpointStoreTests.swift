import Foundation
import Testing
@testable import CAMFAStore

private let logins = PartitionID(topic: "logins", partition: 3)

@Suite struct RoundTripTests {
    @Test func writeThenLoadReturnsExactlyWhatWasWritten() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        let write = CheckpointWrite(
            partition: logins, epoch: 2, nextOffset: 1_234, metadata: [1, 0, 255, 7],
            upserts: [
                ("event.ip", "203.0.113.7", bytes(1, count: 60)),
                ("event.ip", "198.51.100.2", bytes(2, count: 60)),
                ("user.country", "alice", []),                    // empty blob is not NULL
                ("user.country", "zoë", bytes(3, count: 3)),      // non-ASCII key
                ("event.ip", "", bytes(4, count: 1)),             // empty key
                ("a\u{0}b", "k\u{0}", bytes(5, count: 2)),        // interior NUL survives
            ],
            userUpserts: [("bob", bytes(6, count: 200)), ("alice", [9])],
            full: true)
        try store.write(write)

        let loaded = try #require(try snapshot(store, logins))
        let expected = Snapshot(
            partition: logins, epoch: 2, nextOffset: 1_234, metadata: [1, 0, 255, 7],
            entries: [
                "event.ip": ["203.0.113.7": bytes(1, count: 60), "198.51.100.2": bytes(2, count: 60), "": bytes(4, count: 1)],
                "user.country": ["alice": [], "zoë": bytes(3, count: 3)],
                "a\u{0}b": ["k\u{0}": bytes(5, count: 2)],
            ],
            users: ["bob": bytes(6, count: 200), "alice": [9]])
        #expect(loaded == expected)
        #expect(loaded.entries.first?.keyspace == "a\u{0}b")
    }

    @Test func loadIsNilUntilTheFirstCheckpointEvenAfterAClaim() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        #expect(try store.load(logins) == nil)
        try store.claim(logins, epoch: 1)
        #expect(try store.load(logins) == nil)
        #expect(try store.partitions().isEmpty)
        try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 0, full: true))
        let loaded = try #require(try store.load(logins))
        #expect(loaded.nextOffset == 0 && loaded.entries.isEmpty && loaded.users.isEmpty && loaded.metadata.isEmpty)
    }

    @Test func stateSurvivesReopeningTheDirectory() throws {
        let dir = TempDirectory()
        do {
            let store = try CheckpointStore(directory: dir.path + "/nested/state")
            try store.write(CheckpointWrite(
                partition: logins, epoch: 3, nextOffset: 99, metadata: [4],
                upserts: [("event.ip", "10.0.0.1", [1, 2])], userUpserts: [("carol", [3])], full: true))
            store.close()
            #expect(throws: StoreError.self) { try store.load(logins) }
        }
        let reopened = try CheckpointStore(directory: dir.path + "/nested/state")
        let loaded = try #require(try snapshot(reopened, logins))
        #expect(loaded.nextOffset == 99 && loaded.epoch == 3)
        #expect(loaded.entries == [Entry(keyspace: "event.ip", key: "10.0.0.1", value: [1, 2])])
        #expect(loaded.users == [UserRow(user: "carol", value: [3])])
    }

    @Test func incrementalCheckpointsComposeAndFullReplaces() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        let other = PartitionID(topic: "logins", partition: 4)
        try store.write(CheckpointWrite(
            partition: other, epoch: 1, nextOffset: 7, upserts: [("event.ip", "1.1.1.1", [7])], full: true))

        var entries: [String: [String: [UInt8]]] = [:]
        var users: [String: [UInt8]] = [:]
        var offset: Int64 = 0
        for round in 0..<12 {
            var write = CheckpointWrite(partition: logins, epoch: 1, nextOffset: offset, metadata: [UInt8(round)])
            // Upsert a sliding window of keys, delete the ones that slid out; some deletes name
            // keys that never existed, which must be harmless.
            for i in (round * 10)..<(round * 10 + 40) {
                let keyspace = i % 3 == 0 ? "event.ip" : "event.asn"
                let value = bytes(round * 1000 + i, count: 1 + i % 70)
                write.upserts.append((keyspace, "k\(i)", value))
                entries[keyspace, default: [:]]["k\(i)"] = value
            }
            for i in max(0, round * 10 - 10)..<(round * 10) {
                let keyspace = i % 3 == 0 ? "event.ip" : "event.asn"
                write.deletes.append((keyspace, "k\(i)"))
                entries[keyspace]?["k\(i)"] = nil
            }
            write.deletes.append(("event.ip", "never-written"))
            write.userUpserts.append(("user\(round)", [UInt8(round)]))
            users["user\(round)"] = [UInt8(round)]
            if round >= 2 {
                write.userDeletes.append("user\(round - 2)")
                users["user\(round - 2)"] = nil
            }
            try store.write(write)
            entries = entries.filter { !$0.value.isEmpty }

            let expected = Snapshot(partition: logins, epoch: 1, nextOffset: offset, metadata: [UInt8(round)],
                                    entries: entries, users: users)
            #expect(try snapshot(store, logins) == expected, "after round \(round)")
            offset += 100
        }

        // A key both deleted and upserted in one checkpoint ends up upserted.
        try store.write(CheckpointWrite(
            partition: logins, epoch: 1, nextOffset: offset, metadata: [],
            upserts: [("event.ip", "k111", [42])], deletes: [("event.ip", "k111")]))
        #expect(try store.load(logins)?.entries.contains { $0.key == "k111" && $0.value == [42] } == true)

        // full: everything not in the upserts disappears, users included.
        try store.write(CheckpointWrite(
            partition: logins, epoch: 2, nextOffset: 5_000, metadata: [9],
            upserts: [("event.ip", "only", [1])], userUpserts: [("dave", [2])], full: true))
        let replaced = try #require(try snapshot(store, logins))
        #expect(replaced == Snapshot(partition: logins, epoch: 2, nextOffset: 5_000, metadata: [9],
                                     entries: ["event.ip": ["only": [1]]], users: ["dave": [2]]))

        // The neighbouring partition was never touched.
        #expect(try store.load(other)?.entries.map(\.key) == ["1.1.1.1"])
        let listed = try store.partitions()
        #expect(listed.map(\.0) == [logins, other])
        #expect(listed.map(\.nextOffset) == [5_000, 7])
        #expect(listed.map(\.epoch) == [2, 1])
    }
}

@Suite struct FencingTests {
    @Test func anOlderEpochIsRefusedAndChangesNothing() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        try store.write(CheckpointWrite(partition: logins, epoch: 4, nextOffset: 10,
                                        upserts: [("event.ip", "a", [1])], full: true))
        try store.claim(logins, epoch: 5)
        let before = try snapshot(store, logins)

        let stale = #expect(throws: StoreError.self) {
            try store.write(CheckpointWrite(partition: logins, epoch: 4, nextOffset: 20,
                                            upserts: [("event.ip", "a", [2]), ("event.ip", "b", [3])]))
        }
        #expect(stale?.code == .fenced)
        #expect(stale?.message.contains(store.path) == true)
        #expect(try snapshot(store, logins) == before)
        // The claim already moved the epoch although no checkpoint was written with it.
        #expect(try store.load(logins)?.epoch == 5)

        try store.write(CheckpointWrite(partition: logins, epoch: 5, nextOffset: 30, upserts: [("event.ip", "a", [5])]))
        try store.write(CheckpointWrite(partition: logins, epoch: 6, nextOffset: 40, upserts: [("event.ip", "a", [6])]))
        let after = try #require(try store.load(logins))
        #expect(after.epoch == 6 && after.nextOffset == 40 && after.entries.map(\.value) == [[6]])

        #expect(throws: StoreError.self) { try store.write(CheckpointWrite(partition: logins, epoch: 5, nextOffset: 50)) }
        let lateClaim = #expect(throws: StoreError.self) { try store.claim(logins, epoch: 5) }
        #expect(lateClaim?.code == .fenced)
        #expect(try store.load(logins)?.nextOffset == 40)
        // Re-claiming with the current epoch is allowed (idempotent).
        try store.claim(logins, epoch: 6)
    }

    @Test func twoStoresOnOneDirectoryFenceEachOther() throws {
        let dir = TempDirectory()
        let first = try CheckpointStore(directory: dir.path)
        let second = try CheckpointStore(directory: dir.path)

        try first.write(CheckpointWrite(partition: logins, epoch: 7, nextOffset: 100,
                                        upserts: [("event.ip", "x", [7])], full: true))
        // The second process was assigned the partition in a newer generation.
        try second.claim(logins, epoch: 8)
        let zombie = #expect(throws: StoreError.self) {
            try first.write(CheckpointWrite(partition: logins, epoch: 7, nextOffset: 200,
                                            upserts: [("event.ip", "x", [99])]))
        }
        #expect(zombie?.code == .fenced)

        let restored = try #require(try second.load(logins))
        #expect(restored.nextOffset == 100 && restored.entries.map(\.value) == [[7]])
        try second.write(CheckpointWrite(partition: logins, epoch: 8, nextOffset: 300,
                                         upserts: [("event.ip", "x", [8])]))
        #expect(try first.load(logins)?.nextOffset == 300)
        #expect(try first.load(logins)?.entries.map(\.value) == [[8]])
    }

    @Test func concurrentWritersOnSeparateStoresNeverInterleaveACheckpoint() async throws {
        let dir = TempDirectory()
        let stores = try (0..<2).map { _ in try CheckpointStore(directory: dir.path) }
        // Each writer rewrites the whole partition with keys all tagged with its own id; a
        // load must always see one writer's complete set, never a mix.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (id, store) in stores.enumerated() {
                group.addTask {
                    for round in 0..<40 {
                        let upserts = (0..<50).map { ("event.ip", "k\($0)", [UInt8(id)]) }
                        try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: Int64(round),
                                                        metadata: [UInt8(id)], upserts: upserts, full: true))
                        let seen = try #require(try store.load(logins))
                        let owners = Set(seen.entries.map(\.value)) 
                        #expect(owners == [seen.metadata] && seen.entries.count == 50)
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}

@Suite struct ConcurrencyTests {
    /// Two daemons sharing a state directory start at the same moment (CI caught it once):
    /// one must not read the header half-way through the other creating the schema.
    @Test func storesOpenedAtTheSameMomentOnANewDirectoryAllSucceed() async throws {
        for _ in 0..<600 {
            let dir = TempDirectory()
            let path = dir.path
            let failures = await withTaskGroup(of: String?.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        do throws(StoreError) {
                            let store = try CheckpointStore(directory: path)
                            store.close()
                            return nil
                        } catch { return error.message }
                    }
                }
                var failures: [String] = []
                for await failure in group { if let failure { failures.append(failure) } }
                return failures
            }
            #expect(failures.isEmpty)
            if !failures.isEmpty { break }
        }
    }

    @Test func loadsOnOneStoreSeeWholeCheckpointsWhileAnotherThreadWrites() async throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 0, metadata: [0],
                                        upserts: (0..<300).map { ("event.ip", "k\($0)", [0]) }, full: true))
        async let writes: Void = Task.detached {
            for round in 1...30 {
                let tag = UInt8(round)
                // Incremental: every key rewritten with the round's tag, offset moves with it.
                try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: Int64(round), metadata: [tag],
                                                upserts: (0..<300).map { ("event.ip", "k\($0)", [tag]) }))
            }
        }.value
        var loads = 0
        var lastOffset: Int64 = -1
        // Bounded, so a failing writer cannot hang the suite.
        for _ in 0..<100_000 where lastOffset < 30 {
            let seen = try #require(try store.load(logins))
            #expect(seen.entries.count == 300)
            #expect(Set(seen.entries.map(\.value)) == [seen.metadata], "a load mixed two checkpoints")
            #expect(seen.metadata == [UInt8(seen.nextOffset)])
            #expect(seen.nextOffset >= lastOffset, "snapshots went backwards")
            lastOffset = seen.nextOffset
            loads += 1
        }
        try await writes
        #expect(loads > 1)
    }
}

@Suite struct FaultTests {
    private func seed(_ store: CheckpointStore) throws -> Snapshot {
        try store.write(CheckpointWrite(
            partition: logins, epoch: 1, nextOffset: 500, metadata: [1],
            upserts: (0..<200).map { ("event.ip", "10.0.0.\($0)", bytes($0, count: 60)) },
            userUpserts: [("erin", [1])], full: true))
        return try #require(try snapshot(store, logins))
    }

    @Test func aWriteThatFillsTheDiskLeavesThePreviousCheckpointIntact() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        let before = try seed(store)

        // max_page_count below the current size clamps to the current size: no room to grow.
        _ = try store.writerIntegerForTesting("PRAGMA max_page_count = 1")
        let big = CheckpointWrite(
            partition: logins, epoch: 2, nextOffset: 900, metadata: [2],
            upserts: (0..<5_000).map { ("event.ip", "k\($0)", bytes($0, count: 500)) },
            deletes: [("event.ip", "10.0.0.1")], userDeletes: ["erin"])
        let full = #expect(throws: StoreError.self) { try store.write(big) }
        #expect(full?.code == .diskFull)
        #expect(full?.message.contains(dir.database) == true)
        #expect(try snapshot(store, logins) == before)

        // A second store sees the same thing: nothing of the failed transaction reached the file.
        #expect(try snapshot(try CheckpointStore(directory: dir.path), logins) == before)

        // Space is back: the same instance writes again.
        _ = try store.writerIntegerForTesting("PRAGMA max_page_count = 1000000")
        try store.write(big)
        let after = try #require(try store.load(logins))
        #expect(after.nextOffset == 900 && after.epoch == 2 && after.users.isEmpty)
        #expect(after.entries.count == 199 + 5_000)
    }

    @Test func readOnlyIsClassifiedAndTheSameInstanceRecovers() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        let before = try seed(store)

        // SQLite opens a write-protected file read-only; the hook does exactly that so the
        // SQLITE_READONLY classification is exercised even as root.
        store.simulateReadOnlyForTesting(true)
        let refused = #expect(throws: StoreError.self) {
            try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 600, upserts: [("event.ip", "new", [1])]))
        }
        #expect(refused?.code == .readOnly)
        #expect(refused.map { $0.resultCode & 0xff } == 8)  // SQLITE_READONLY
        #expect(refused?.message.contains(dir.database) == true)
        #expect(try snapshot(store, logins) == before)
        let claimRefused = #expect(throws: StoreError.self) { try store.claim(logins, epoch: 9) }
        #expect(claimRefused?.code == .readOnly)

        store.simulateReadOnlyForTesting(false)
        try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 600, upserts: [("event.ip", "new", [1])]))
        #expect(try store.load(logins)?.nextOffset == 600)
        #expect(try store.load(logins)?.entries.count == 201)
    }

    @Test(.enabled(if: !runningAsRoot, "root ignores permission bits"))
    func aReadOnlyDirectoryPausesWritesUntilItIsWritableAgain() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        let before = try seed(store)
        let files = [dir.database, dir.database + "-wal", dir.database + "-shm"]
        for file in files { _ = chmod(file, 0o444) }
        _ = chmod(dir.path, 0o555)

        let refused = #expect(throws: StoreError.self) {
            try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 600))
        }
        #expect(refused?.code == .readOnly)
        #expect(try snapshot(store, logins) == before)

        _ = chmod(dir.path, 0o755)
        for file in files { _ = chmod(file, 0o644) }
        try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 600))
        #expect(try store.load(logins)?.nextOffset == 600)
    }

    @Test func aFileThatIsNotADatabaseIsCorruptAtOpen() throws {
        let dir = TempDirectory()
        do {
            let store = try CheckpointStore(directory: dir.path)
            _ = try seed(store)
            store.close()
        }
        let garbage = Data(bytes(7, count: 8192))
        let handle = try #require(FileHandle(forWritingAtPath: dir.database))
        try handle.write(contentsOf: garbage)
        try handle.close()

        let error = #expect(throws: StoreError.self) { _ = try CheckpointStore(directory: dir.path) }
        #expect(error?.code == .corrupt)
        #expect(error?.message.contains(dir.database) == true)
    }

    @Test func damagedPagesAreReportedAsCorruptAndNothingIsReturned() throws {
        let dir = TempDirectory()
        do {
            let store = try CheckpointStore(directory: dir.path)
            try store.write(CheckpointWrite(
                partition: logins, epoch: 1, nextOffset: 1,
                upserts: (0..<20_000).map { ("event.ip", "key-\($0)", bytes($0, count: 60)) }, full: true))
            store.close()  // the last close checkpoints the WAL into the main file
        }
        // Overwrite the last third of the file: leaf pages of the entries table, far from the
        // schema and partition header on the first pages.
        let size = try #require(try FileManager.default.attributesOfItem(atPath: dir.database)[.size] as? Int)
        let handle = try #require(FileHandle(forUpdatingAtPath: dir.database))
        try handle.seek(toOffset: UInt64(size - size / 3))
        try handle.write(contentsOf: Data(repeating: 0xA5, count: size / 3))
        try handle.close()

        do {
            let store = try CheckpointStore(directory: dir.path)
            let error = #expect(throws: StoreError.self) { _ = try store.load(logins) }
            #expect(error?.code == .corrupt)
            #expect(error?.message.contains(dir.database) == true)
        } catch let error {
            // Opening may already notice the damage; then it must say so.
            #expect(error.code == .corrupt)
        }
    }

    @Test func aFlippedBitInsideAValueIsCaughtByTheRowChecksum() throws {
        let dir = TempDirectory()
        let marker = Array("camfa-row-checksum-marker-0123456789abcdefghijklmnopqrstuvwxyz".utf8)
        do {
            let store = try CheckpointStore(directory: dir.path)
            try store.write(CheckpointWrite(
                partition: logins, epoch: 1, nextOffset: 1,
                upserts: [("event.ip", "a", [1]), ("event.ip", "b", marker), ("event.ip", "c", [3])], full: true))
            store.close()
        }
        // SQLite's page structure stays valid: only the payload changes, which SQLite cannot see.
        try flipBit(in: dir.database, at: 20, into: marker)

        let store = try CheckpointStore(directory: dir.path)
        let error = #expect(throws: StoreError.self) { _ = try store.load(logins) }
        #expect(error?.code == .corrupt)
        #expect(error?.message.contains("checksum") == true)
        #expect(error?.message.contains(dir.database) == true)
    }

    @Test func aForeignSQLiteFileIsRefused() throws {
        let dir = TempDirectory()
        do {
            let store = try CheckpointStore(directory: dir.path)
            // Stamp another application's id into the header.
            _ = try store.writerIntegerForTesting("PRAGMA application_id = 42")
            store.close()
        }
        let error = #expect(throws: StoreError.self) { _ = try CheckpointStore(directory: dir.path) }
        #expect(error?.code == .schema)
    }

    @Test func aWriteLockHeldElsewhereIsBusyAndTheWriteSucceedsOnceItIsReleased() throws {
        let dir = TempDirectory()
        let holder = try CheckpointStore(directory: dir.path)
        let before = try seed(holder)
        let waiter = try CheckpointStore(directory: dir.path, busyTimeoutMilliseconds: 50)
        // Another process in the middle of its own checkpoint.
        _ = try holder.writerIntegerForTesting("BEGIN IMMEDIATE")
        let busy = #expect(throws: StoreError.self) {
            try waiter.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 700))
        }
        #expect(busy?.code == .busy)
        #expect(busy?.message.contains(dir.database) == true)
        #expect(try snapshot(waiter, logins) == before)

        _ = try holder.writerIntegerForTesting("COMMIT")
        try waiter.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 700))
        #expect(try holder.load(logins)?.nextOffset == 700)
    }

    @Test func aClosedStoreRefusesWork() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        store.close()
        let error = #expect(throws: StoreError.self) {
            try store.write(CheckpointWrite(partition: logins, epoch: 1, nextOffset: 1))
        }
        #expect(error?.code == .open)
        #expect(throws: StoreError.self) { _ = try store.partitions() }
    }

    @Test func anUncreatableDirectoryIsReported() throws {
        let dir = TempDirectory()
        let blocker = dir.path + "/file"
        #expect(FileManager.default.createFile(atPath: blocker, contents: Data([1])))
        let error = #expect(throws: StoreError.self) { _ = try CheckpointStore(directory: blocker + "/state") }
        #expect(error?.code == .open)
        #expect(error?.message.contains(blocker) == true)
    }
}

@Suite struct DuplicateKeyTests {
    @Test func theLastOccurrenceOfAKeyInOneCheckpointWins() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        // Full checkpoints use plain INSERTs: duplicates must not turn into constraint errors.
        try store.write(CheckpointWrite(
            partition: logins, epoch: 1, nextOffset: 1,
            upserts: [("event.ip", "a", [1]), ("event.ip", "b", [2]), ("event.ip", "a", [3])],
            userUpserts: [("u", [1]), ("u", [2])], full: true))
        var loaded = try #require(try snapshot(store, logins))
        #expect(loaded.entries == [Entry(keyspace: "event.ip", key: "a", value: [3]), Entry(keyspace: "event.ip", key: "b", value: [2])])
        #expect(loaded.users == [UserRow(user: "u", value: [2])])

        try store.write(CheckpointWrite(
            partition: logins, epoch: 1, nextOffset: 2,
            upserts: [("event.ip", "b", [5]), ("event.ip", "b", [6])],
            userUpserts: [("u", [7]), ("u", [8])]))
        loaded = try #require(try snapshot(store, logins))
        #expect(loaded.entries.map(\.value) == [[3], [6]])
        #expect(loaded.users.map(\.value) == [[8]])
    }
}
