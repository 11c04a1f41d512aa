import CAMFACore
import CAMFAPolicyFiles
import Testing
import CAMFATestSupport

/// A policy reload moves each partition's state to the new set (`migrated(to:)`).
@Suite struct PartitionStateMigrationTests {
    static func policies(window n: String, extraStatistic: Bool = false) -> [String: String] {
        let p = """
        policy: p
        statistics:
          - name: n
            key: event.ip
            window: \(n)
            aggregation: count
        judgment: stats.n >= 2
        """
        let q = """
        policy: q
        statistics:
          - name: m
            key: event.ip
            window: 10m
            aggregation: count
        \(extraStatistic ? "  - name: k\n    key: event.ip\n    window: 1h\n    aggregation: count\n" : "")judgment: stats.m >= 2
        """
        let flow = "flow: f\npolicies: [p, q]\nbranches:\n  - when: policies.p.hit\n    deny: true\n"
            + "  - when: policies.q.hit\n    mfa: [otp]\n"
        return ["p.yaml": p, "q.yaml": q, "f.yaml": flow]
    }

    /// One event judged, then checkpointed (clean), then a second one pending.
    static func state(_ set: PolicySet) -> PartitionState {
        var s = PartitionState(policySet: set)
        _ = Engine(policySet: set, challengeKey: testChallengeKey).process(event("u", at: 1_000), coordinates: "c/0", state: &s)
        _ = s.takeChanges()
        _ = Engine(policySet: set, challengeKey: testChallengeKey).process(event("v", at: 2_000, ip: "198.51.100.9"), coordinates: "c/1", state: &s)
        return s
    }

    @Test func unchangedStatisticsKeepStateAndPendingChanges() throws {
        let set = try loadSet(Self.policies(window: "10m"))
        let s = Self.state(set)
        var same = try s.migrated(to: try loadSet(Self.policies(window: "10m")))
        #expect(same.pendingChangeCount == s.pendingChangeCount)
        #expect(same.pendingChangeCount > 0)
        let changes = same.takeChanges()
        #expect(!changes.full, "nothing was dropped: the incremental checkpoint stays valid")
        // Both statistics carried over: the second event from the first IP hits p first.
        var again = try s.migrated(to: set)
        #expect(summary(Engine(policySet: set, challengeKey: testChallengeKey).process(event("u", at: 3_000), coordinates: "c/2", state: &again)) == ["f:deny"])
    }

    @Test func aChangedWindowIsDroppedTheOthersKeptAndTheNextCheckpointIsFull() throws {
        let old = try loadSet(Self.policies(window: "10m"))
        let new = try loadSet(Self.policies(window: "20m"))
        let s = Self.state(old)
        var moved = try s.migrated(to: new)
        // p's n (window changed) starts empty: p misses; q's m kept its count: q hits.
        var judged = moved
        #expect(summary(Engine(policySet: new, challengeKey: testChallengeKey).process(event("u", at: 3_000), coordinates: "c/2", state: &judged)) == ["f:mfa:otp"])
        let changes = moved.takeChanges()
        #expect(changes.full)
        let rows = try PartitionState.mergedRows(metadata: changes.metadata, segments: changes.segments, entries: changes.upserts, users: changes.userUpserts)
        #expect(rows.entries.map(\.key) == ["198.51.100.9", "203.0.113.7"], "both IPs' records, written whole")
        #expect(rows.users.map(\.user) == ["u", "v"])
    }

    /// A statistic added to a keyspace drops nothing, yet the pending changes were lost
    /// with the old layout: the next checkpoint must still be whole.
    @Test func anAddedStatisticStillMakesTheNextCheckpointFull() throws {
        let s = Self.state(try loadSet(Self.policies(window: "10m")))
        let new = try loadSet(Self.policies(window: "10m", extraStatistic: true))
        #expect(new.keyspaces.count == 1)
        var moved = try s.migrated(to: new)
        let changes = moved.takeChanges()
        #expect(changes.full)
        let rows = try PartitionState.mergedRows(metadata: changes.metadata, segments: changes.segments, entries: changes.upserts, users: changes.userUpserts)
        #expect(rows.entries.count == 2)
    }
}
