import CAMFADaemon
import CAMFAStore
import CAMFATestSupport
import Testing

/// The changelog protocol (ChangelogRecord, ChangelogReplay) against a model of what the
/// committed checkpoints hold, through owners that crash half-way through a batch, zombies
/// that keep writing after they lost the task, and compaction.
@Suite struct ChangelogReplayTests {
    static let partition = PartitionID(topic: "in", partition: 3)

    /// What the local store holds after the committed writes (CheckpointWrite's semantics).
    struct Model: Equatable {
        var segments: [[UInt8]] = []
        var entries: [String: [UInt8]] = [:]
        var users: [String: [UInt8]] = [:]
        var nextOffset: Int64 = -1

        mutating func apply(_ w: CheckpointWrite) {
            if w.full {
                segments = w.segments
                entries = [:]
                users = [:]
            }
            let base = !segments.isEmpty
            for d in w.deletes { if base { entries[d.keyspace + "/" + d.key] = [] } else { entries.removeValue(forKey: d.keyspace + "/" + d.key) } }
            for d in w.userDeletes { if base { users[d] = [] } else { users.removeValue(forKey: d) } }
            for u in w.upserts { entries[u.keyspace + "/" + u.key] = u.value }
            for u in w.userUpserts { users[u.user] = u.value }
            nextOffset = w.nextOffset
        }

        init() {}

        init(_ c: PartitionCheckpoint) {
            segments = c.segments
            for e in c.entries { entries[e.keyspace + "/" + e.key] = e.value }
            for u in c.users { users[u.user] = u.value }
            nextOffset = c.nextOffset
        }
    }

    /// An in-memory changelog partition and the owners writing it by the protocol of
    /// ChangelogTopic (rows, then the marker; a restore repairs and claims).
    struct Log {
        var records: [(key: [UInt8], value: [UInt8])] = []

        mutating func append(_ r: [ChangelogRecord]) { records += r.map { ($0.key, $0.value) } }

        func replay() throws -> ChangelogReplay {
            var r = ChangelogReplay()
            for rec in records { try r.apply(key: rec.key, value: rec.value) }
            return r
        }

        /// Kafka's compaction: the newest record of each key, in log order.
        mutating func compact() {
            var last: [[UInt8]: Int] = [:]
            for (i, r) in records.enumerated() { last[r.key] = i }
            records = records.enumerated().filter { last[$0.element.key] == $0.offset }.map(\.element)
        }
    }

    struct Owner {
        var epoch: Int64
        var seq: Int64
        var generation: Int64
        var chunks: UInt32

        /// Restores as ChangelogTopic.restore does; returns the owner and what it restored.
        static func restore(_ log: inout Log, floor: Int64) throws -> (Owner, PartitionCheckpoint?) {
            let replay = try log.replay()
            let checkpoint = try replay.checkpoint(partition: ChangelogReplayTests.partition)
            let stamp = ChangelogRecord.Stamp(epoch: max(floor, replay.maxEpoch + 1), seq: replay.maxSeq + 1,
                                              generation: replay.marker?.stamp.generation ?? 0)
            log.append(try replay.repairRows(stamp: stamp))
            if let m = replay.marker {
                log.append([.marker(.init(stamp: stamp, nextOffset: m.nextOffset, full: false, chunks: m.chunks, metadata: m.metadata))])
            }
            return (Owner(epoch: stamp.epoch, seq: stamp.seq + 1, generation: stamp.generation, chunks: replay.marker?.chunks ?? 0), checkpoint)
        }

        /// One batch; `crashAfter` rows of it reach the log when the writer dies.
        mutating func write(_ w: CheckpointWrite, to log: inout Log, crashAfter: Int? = nil) -> Bool {
            let stamp = ChangelogRecord.Stamp(epoch: epoch, seq: seq, generation: w.full ? generation + 1 : generation)
            seq += 1
            let batch = ChangelogRecord.batch(w, stamp: stamp, chunks: chunks, chunkBytes: 7)
            if let crashAfter, crashAfter < batch.count {
                log.append(Array(batch.prefix(crashAfter)))
                return false
            }
            log.append(batch)
            generation = stamp.generation
            if case .marker(let m) = batch.last! { chunks = m.chunks }
            return true
        }
    }

    static func randomWrite(_ rng: inout SeededRandom, offset: Int64) -> CheckpointWrite {
        let full = rng.int(8) == 0
        var w = CheckpointWrite(partition: partition, epoch: 0, nextOffset: offset, metadata: [UInt8(rng.int(256))], full: full)
        if full { w.segments = (0..<rng.int(3)).map { _ in (0..<(1 + rng.int(20))).map { _ in UInt8(rng.int(256)) } } }
        for _ in 0..<rng.int(6) {
            let ks = ["ip", "app"][rng.int(2)], key = "k\(rng.int(12))"
            if rng.int(3) == 0 { w.deletes.append((ks, key)) } else { w.upserts.append((ks, key, [UInt8(1 + rng.int(255))])) }
        }
        for _ in 0..<rng.int(3) {
            let user = "u\(rng.int(6))"
            if rng.int(3) == 0 { w.userDeletes.append(user) } else { w.userUpserts.append((user, [UInt8(1 + rng.int(255))])) }
        }
        // A key deleted and upserted in one write ends upserted (the store's rule).
        w.deletes.removeAll { d in w.upserts.contains { $0.keyspace == d.keyspace && $0.key == d.key } }
        w.userDeletes.removeAll { d in w.userUpserts.contains { $0.user == d } }
        return w
    }

    @Test func aFinishedBatchRoundTripsAndAnUnfinishedOneIsIgnored() throws {
        var log = Log()
        var (owner, none) = try Owner.restore(&log, floor: 100)
        #expect(none == nil)
        let first = CheckpointWrite(partition: Self.partition, epoch: 0, nextOffset: 10, metadata: [9],
                                    upserts: [("ip", "1.2.3.4", [1, 2])], userUpserts: [("alice", [3])], full: true, segments: [[7, 7, 7, 7, 7, 7, 7, 7, 7, 7]])
        #expect(owner.write(first, to: &log))
        let half = CheckpointWrite(partition: Self.partition, epoch: 0, nextOffset: 20, metadata: [9],
                                   upserts: [("ip", "1.2.3.4", [5]), ("ip", "5.6.7.8", [6])], userDeletes: ["alice"])
        #expect(!owner.write(half, to: &log, crashAfter: 2))
        let (next, restored) = try Owner.restore(&log, floor: 100)
        let c = try #require(restored)
        #expect(c.nextOffset == 10 && c.metadata == [9] && c.segments == [[7, 7, 7, 7, 7, 7, 7, 7, 7, 7]])
        #expect(c.entries.map(\.key) == ["1.2.3.4"] && c.entries[0].value == [1, 2] && c.users.map(\.user) == ["alice"])
        #expect(next.epoch == 101 && next.seq > owner.seq - 1)
        // The repair rewrote the unfinished rows: even with every older version compacted
        // away, the log still holds the committed checkpoint.
        log.compact()
        let again = try #require(try log.replay().checkpoint(partition: Self.partition))
        #expect(Model(again) == Model(c))
    }

    @Test func aZombieWritingAfterTheNewOwnersMarkerIsIgnored() throws {
        var log = Log()
        var (old, _) = try Owner.restore(&log, floor: 1)
        #expect(old.write(CheckpointWrite(partition: Self.partition, epoch: 0, nextOffset: 5, upserts: [("ip", "a", [1])], full: true), to: &log))
        var (new, _) = try Owner.restore(&log, floor: 1)
        // The old owner has not noticed; its batch lands after the new owner's claim.
        #expect(old.write(CheckpointWrite(partition: Self.partition, epoch: 0, nextOffset: 9, upserts: [("ip", "a", [66])]), to: &log))
        let replay = try log.replay()
        #expect(replay.ignored == 2)
        let c = try #require(try replay.checkpoint(partition: Self.partition))
        #expect(c.nextOffset == 5 && c.entries.first?.value == [1])
        // The next owner repairs the key the zombie wrote.
        #expect(replay.repairKeys.contains(ChangelogRecord.entry(keyspace: "ip", key: "a", .init(stamp: .init(epoch: 0, seq: 0, generation: 0), payload: [])).key))
        #expect(new.write(CheckpointWrite(partition: Self.partition, epoch: 0, nextOffset: 12, upserts: [("ip", "b", [2])]), to: &log))
        let after = try #require(try log.replay().checkpoint(partition: Self.partition))
        #expect(after.nextOffset == 12 && after.entries.map(\.value) == [[1], [2]])
    }

    /// Owners come and go (crashing half-way through a batch a fifth of the time), the log
    /// is compacted now and then; every restore equals the committed writes' state.
    @Test(arguments: 0..<20)
    func everyRestoreEqualsTheCommittedState(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        var log = Log()
        var model = Model()
        var committedAny = false
        var (owner, _) = try Owner.restore(&log, floor: 1)
        var offset: Int64 = 0
        for step in 0..<300 {
            offset += Int64(1 + rng.int(5))
            let w = Self.randomWrite(&rng, offset: offset)
            let crash = rng.int(5) == 0
            if owner.write(w, to: &log, crashAfter: crash ? rng.int(8) : nil) {
                model.apply(w)
                committedAny = true
            } else {
                let restored: PartitionCheckpoint?
                (owner, restored) = try Owner.restore(&log, floor: 1)
                // Compaction never reaches an unfinished batch before its repair (it is in
                // the active segment); after the repair it may run any time.
                if rng.int(3) == 0 { log.compact() }
                if committedAny {
                    let c = try #require(restored, "seed \(seed) step \(step): nothing restored")
                    #expect(Model(c) == model, "seed \(seed) step \(step)")
                } else {
                    #expect(restored == nil)
                }
            }
        }
        log.compact()
        let final = try log.replay().checkpoint(partition: Self.partition)
        if committedAny { #expect(final.map(Model.init) == model, "seed \(seed): after compaction") }
    }

    @Test func recordsRoundTripThroughTheirBytes() throws {
        let stamp = ChangelogRecord.Stamp(epoch: 1_765_000_000_000_000, seq: 42, generation: 3)
        let records: [ChangelogRecord] = [
            .entry(keyspace: "ip_users", key: "10.0.0.1\u{0}x", .init(stamp: stamp, payload: [1, 2, 3])),
            .user("ålice", .init(stamp: stamp, payload: [])),
            .user("bob", .init(stamp: stamp, payload: nil)),
            .baseChunk(index: 70_000, .init(stamp: stamp, payload: [9])),
            .marker(.init(stamp: stamp, nextOffset: 1234, full: true, chunks: 5, metadata: [0, 1])),
        ]
        for r in records { #expect(try ChangelogRecord(key: r.key, value: r.value) == r) }
        #expect(try ChangelogRecord(key: [UInt8(ascii: "u")], value: nil) == nil)
        #expect(throws: ChangelogError.self) { try ChangelogRecord(key: [UInt8(ascii: "x")], value: [UInt8](repeating: 0, count: 24)) }
        #expect(throws: ChangelogError.self) { try ChangelogRecord(key: [UInt8(ascii: "u")], value: [1, 2]) }
    }
}
