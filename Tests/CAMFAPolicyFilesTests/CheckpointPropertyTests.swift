import CAMFACore
import CAMFAPolicyFiles
import Testing
import CAMFATestSupport

/// For random event streams: checkpoint at a random point → restore → continue gives the
/// same decisions and the same state as an uninterrupted run.
@Suite struct CheckpointPropertyTests {

    static func stream(seed: UInt64, count: Int) -> [UEBAEvent] {
        var rng = SeededRandom(seed: seed)
        var t: Int64 = 1_767_225_600_000
        let cities = ["Paris", "Tokyo", "Lima", "Oslo"]
        let apps = ["portal", "mail", "crm", "wiki", "chat", "finance-app", "hr-app"]
        let groups: [Value] = [.string("finance"), .string("hr"), .string("engineering")]
        return (0..<count).map { _ in
            // Mostly forward in time, sometimes slightly out of order, sometimes a long gap
            // so windows expire and keys are swept.
            switch rng.int(20) {
            case 0: t -= Int64(rng.int(120_000))
            case 1: t += Int64(rng.int(3_600_000))
            default: t += Int64(rng.int(20_000))
            }
            let user = "u\(rng.int(12))"
            var custom: [(String, Value)] = [("userGroups", .list([groups[rng.int(3)]]))]
            if rng.int(3) > 0 { custom.append(("sessionId", .string("s\(rng.int(6))"))) }
            if rng.int(4) > 0 { custom.append(("deviceId", .string("d\(rng.int(3))"))) }
            var e = event(user, at: t, app: apps[rng.int(apps.count)], type: rng.int(4) == 0 ? "access" : "login",
                          result: rng.int(3) == 0 ? "failure" : "success",
                          ip: rng.int(3) == 0 ? "10.20.0.\(rng.int(4))" : "198.51.100.\(rng.int(4))",
                          city: rng.int(8) == 0 ? nil : cities[rng.int(cities.count)], custom: custom)
            if rng.int(2) == 0 {
                e.geo = GeoInfo(latitude: Double(rng.int(180)) - 90, longitude: Double(rng.int(360)) - 180, accuracyRadius: 20)
            }
            return e
        }
    }

    @Test(arguments: 0..<40)
    func restoreThenContinueEqualsUninterrupted(seed: Int) throws {
        let set = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        let events = Self.stream(seed: UInt64(seed), count: 300)
        var rng = SeededRandom(seed: UInt64(seed) &+ 1000)
        let cut = rng.int(events.count)

        var straight = PartitionState(policySet: set)
        var straightDecisions: [EvaluationOutcome] = []
        for (i, e) in events.enumerated() {
            straightDecisions.append(engine.process(e, coordinates: "t/0/\(i)", state: &straight))
        }

        var first = PartitionState(policySet: set)
        var resumedDecisions: [EvaluationOutcome] = []
        for (i, e) in events[..<cut].enumerated() {
            resumedDecisions.append(engine.process(e, coordinates: "t/0/\(i)", state: &first))
        }
        let bytes = first.serialized()
        var resumed = try PartitionState(restoring: bytes, policySet: set)
        #expect(resumed.serialized() == bytes, "restore must reproduce the checkpoint byte for byte")
        for (i, e) in events[cut...].enumerated() {
            resumedDecisions.append(engine.process(e, coordinates: "t/0/\(cut + i)", state: &resumed))
        }
        #expect(resumedDecisions == straightDecisions)
        #expect(resumed.serialized() == straight.serialized())
        #expect(straightDecisions.contains { $0.decisions.contains { $0.action == .mfa } })
    }

    @Test func corruptCheckpointsAreRefusedWhole() throws {
        let set = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        for (i, e) in Self.stream(seed: 7, count: 100).enumerated() {
            _ = engine.process(e, coordinates: "t/0/\(i)", state: &state)
        }
        let bytes = state.serialized()
        var refused = 0
        for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 97)) {
            if (try? PartitionState(restoring: Array(bytes[..<cut]), policySet: set)) == nil { refused += 1 }
        }
        // Every truncation is detected; none yields a half-loaded state.
        #expect(refused == (0..<bytes.count).filter { $0 % max(1, bytes.count / 97) == 0 }.count)
        var flipped = bytes
        flipped[0] ^= 0xFF
        #expect((try? PartitionState(restoring: flipped, policySet: set)) == nil)
    }

    @Test func aChangedStatisticStartsEmptyAfterRestore() throws {
        let base = """
        policy: p
        statistics:
          - name: n
            key: event.ip
            window: 10m
            aggregation: count
        judgment: stats.n >= 2
        """
        let flow = "flow: f\npolicies: [p]\nbranches:\n  - when: policies.p.hit\n    deny: true\n"
        let set1 = try loadSet(["p.yaml": base, "f.yaml": flow])
        let set2 = try loadSet(["p.yaml": base.replacingOccurrences(of: "10m", with: "20m"), "f.yaml": flow])
        var s = PartitionState(policySet: set1)
        _ = Engine(policySet: set1, challengeKey: testChallengeKey).process(event("u", at: 1), coordinates: "c/0", state: &s)
        let same = try PartitionState(restoring: s.serialized(), policySet: set1)
        let changed = try PartitionState(restoring: s.serialized(), policySet: set2)
        var a = same, b = changed
        #expect(summary(Engine(policySet: set1, challengeKey: testChallengeKey).process(event("u", at: 2), coordinates: "c/1", state: &a)) == ["f:deny"])
        #expect(summary(Engine(policySet: set2, challengeKey: testChallengeKey).process(event("u", at: 2), coordinates: "c/1", state: &b)) == ["f:allow"])
    }
}

/// The checkpoint as the store keeps it (a base of segments, rows on top with tombstones),
/// modelled in memory: checkpoints taken at random points, each restore equals the live state.
@Suite struct SegmentedCheckpointTests {
    /// What CheckpointStore does with a write, without SQLite.
    struct StoredModel {
        var metadata: [UInt8] = []
        var segments: [[UInt8]] = []
        var entries: [String: [String: [UInt8]]] = [:]
        var users: [String: [UInt8]] = [:]
        var fullWrites = 0
        var rebases = 0

        mutating func apply(_ c: PartitionChanges) {
            metadata = c.metadata
            if c.full {
                segments = c.segments
                entries = [:]
                users = [:]
                fullWrites += 1
            }
            let hasBase = !segments.isEmpty
            for d in c.deletes { entries[d.keyspace, default: [:]][d.key] = hasBase ? [] : nil }
            for d in c.userDeletes { users[d] = hasBase ? [] : nil }
            for u in c.upserts { entries[u.keyspace, default: [:]][u.key] = u.value }
            for u in c.userUpserts { users[u.user] = u.value }
        }

        /// What the checkpoint writer does after a write whose take asked for it.
        mutating func rebase() throws {
            segments = try PartitionState.rebasedSegments(metadata: metadata, segments: segments, entries: rows, users: userRows)
            entries = [:]
            users = [:]
            rebases += 1
        }

        var rows: [(keyspace: String, key: String, value: [UInt8])] {
            entries.keys.sorted().flatMap { ks in entries[ks]!.keys.sorted().map { (ks, $0, entries[ks]![$0]!) } }
        }
        var userRows: [(user: String, value: [UInt8])] { users.keys.sorted().map { ($0, users[$0]!) } }
        var tombstones: Int { entries.values.reduce(0) { $0 + $1.values.filter(\.isEmpty).count } + users.values.filter(\.isEmpty).count }
    }

    @Test(arguments: 0..<12)
    func restoreFromBaseAndRowsEqualsTheLiveState(seed: Int) throws {
        let set = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        state.rebaseMinimumRows = 8
        var stored = StoredModel()
        var rng = SeededRandom(seed: UInt64(seed) &+ 77)
        var restores = 0
        for (i, e) in CheckpointPropertyTests.stream(seed: UInt64(seed), count: 400).enumerated() {
            _ = engine.process(e, coordinates: "t/0/\(i)", state: &state)
            guard rng.int(15) == 0 else { continue }
            let snapshot = state.takeChangeSnapshot()
            let changes = snapshot.encoded(parallel: { n, body in
                // Units in reverse order: the result must not depend on the schedule.
                for u in (0..<n).reversed() { body(u) }
            })
            stored.apply(changes)
            if snapshot.rebase {
                #expect(!stored.entries.isEmpty || !stored.users.isEmpty)
                try stored.rebase()
            }
            let restored = try PartitionState(restoringMetadata: stored.metadata, segments: stored.segments, entries: stored.rows,
                                              users: stored.userRows, policySet: set)
            #expect(restored.serialized() == state.serialized(), "checkpoint after event \(i)")
            let merged = try PartitionState.mergedRows(metadata: stored.metadata, segments: stored.segments,
                                                       entries: stored.rows, users: stored.userRows)
            #expect(merged.entries.allSatisfy { !$0.value.isEmpty } && merged.users.allSatisfy { !$0.value.isEmpty })
            #expect(merged.entries.count + merged.users.count == state.liveKeyCount)
            restores += 1
        }
        #expect(restores > 10)
        // The base was rewritten as the rows on top of it grew, by the writer, while the
        // engine wrote a full snapshot only the first time.
        #expect(stored.rebases > 0)
        #expect(stored.fullWrites == 1)
    }

    @Test func deletionsOnTopOfABaseAreTombstonesAndRestoreWithoutTheKey() throws {
        let set = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        var stored = StoredModel()
        let events = CheckpointPropertyTests.stream(seed: 3, count: 60)
        for (i, e) in events.enumerated() { _ = engine.process(e, coordinates: "t/0/\(i)", state: &state) }
        stored.apply(state.takeChanges())
        #expect(!stored.segments.isEmpty)
        // Two days later every window has expired: the sweep deletes the keys in the base.
        var late = events.last!
        late.requestDate += 2 * 86_400_000
        _ = engine.process(late, coordinates: "t/0/60", state: &state)
        let changes = state.takeChanges()
        #expect(!changes.full)
        #expect(!changes.deletes.isEmpty)
        stored.apply(changes)
        #expect(stored.tombstones >= changes.deletes.count)
        let restored = try PartitionState(restoringMetadata: stored.metadata, segments: stored.segments, entries: stored.rows,
                                          users: stored.userRows, policySet: set)
        #expect(restored.serialized() == state.serialized())
        #expect(restored.liveKeyCount == state.liveKeyCount)
    }

    /// The base names keyspaces by position and holds records in the stored slot order: a
    /// restore under a set whose layout differs in any way must write a new base before
    /// rows of the new layout go on top (else the next restore misreads the base).
    @Test(arguments: [false, true])
    func aRestoreUnderAnotherLayoutWritesAFullCheckpointNext(addStatistic: Bool) throws {
        let old = try loadSet(PartitionStateMigrationTests.policies(window: "10m"))
        let new = try loadSet(PartitionStateMigrationTests.policies(window: addStatistic ? "10m" : "20m", extraStatistic: addStatistic))
        var state = PartitionState(policySet: old)
        var stored = StoredModel()
        _ = Engine(policySet: old, challengeKey: testChallengeKey).process(event("u", at: 1_000), coordinates: "c/0", state: &state)
        stored.apply(state.takeChanges())
        _ = Engine(policySet: old, challengeKey: testChallengeKey).process(event("v", at: 2_000, ip: "198.51.100.9"), coordinates: "c/1", state: &state)
        stored.apply(state.takeChanges())
        #expect(!stored.segments.isEmpty && !stored.entries.isEmpty)

        var restored = try PartitionState(restoringMetadata: stored.metadata, segments: stored.segments, entries: stored.rows,
                                          users: stored.userRows, policySet: new)
        _ = Engine(policySet: new, challengeKey: testChallengeKey).process(event("u", at: 3_000), coordinates: "c/2", state: &restored)
        let next = restored.takeChanges()
        #expect(next.full, "rows of the new layout on top of a base of the old one")
        stored.apply(next)
        var again = try PartitionState(restoringMetadata: stored.metadata, segments: stored.segments, entries: stored.rows,
                                       users: stored.userRows, policySet: new)
        #expect(again.serialized() == restored.serialized())
        // Every slot of the new layout is usable after the second restore.
        #expect(summary(Engine(policySet: new, challengeKey: testChallengeKey).process(event("u", at: 4_000), coordinates: "c/3", state: &again)) != [])
    }

    @Test func aDamagedSegmentIsRefused() throws {
        let set = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        for (i, e) in CheckpointPropertyTests.stream(seed: 5, count: 80).enumerated() { _ = engine.process(e, coordinates: "t/0/\(i)", state: &state) }
        let changes = state.takeChanges()
        var segments = changes.segments
        let longest = segments.indices.max { segments[$0].count < segments[$1].count }!
        segments[longest] = Array(segments[longest].dropLast(3))
        #expect(throws: BinaryDecodingError.self) {
            try PartitionState(restoringMetadata: changes.metadata, segments: segments, entries: [], users: [], policySet: set)
        }
        segments = changes.segments
        segments[longest][0] = 99
        #expect(throws: BinaryDecodingError.self) {
            try PartitionState(restoringMetadata: changes.metadata, segments: segments, entries: [], users: [], policySet: set)
        }
    }
}
