@testable import CAMFACore
import CAMFAPolicyFiles
import Testing
import CAMFATestSupport

/// What keeps a full checkpoint from stalling the poll thread: while the writer holds the
/// snapshot, an event copies only the shards of the keys it changes (not whole maps), and
/// while a full checkpoint is pending no set of every changed key is built up.
@Suite struct FullSnapshotSharingTests {
    static func sameStorage<K, V>(_ a: [K: V], _ b: [K: V]) -> Bool {
        unsafeBitCast(a, to: UnsafeRawPointer.self) == unsafeBitCast(b, to: UnsafeRawPointer.self)
    }

    static let start: Int64 = 1_767_225_600_000

    /// One statistic keyed by user: each user has one key in keyspace 0.
    static func engine() throws -> Engine {
        Engine(policySet: try SweepTests.countingSet(key: "event.originalIdentity", atLeast: 1_000, action: "mfa: [otp]"), challengeKey: testChallengeKey)
    }

    /// `events` logins, one per millisecond from `start`, going round `users` users.
    static func built(_ engine: Engine, users: Int, events: Int) -> PartitionState {
        var state = PartitionState(policySet: engine.policySet)
        for i in 0..<events { _ = engine.process(event("u\(i % users)", at: start + Int64(i)), coordinates: "t/0/\(i)", state: &state) }
        return state
    }

    @Test func anEventAfterAFullSnapshotCopiesOnlyTheShardsOfItsKeys() throws {
        let (engine, t) = (try Self.engine(), Self.start)
        var state = Self.built(engine, users: 5_000, events: 5_000)
        let snapshot = state.takeChangeSnapshot()
        #expect(snapshot.full)

        _ = engine.process(event("u42", at: t + 5_000), coordinates: "t/0/5000", state: &state)

        let touched = ShardedMap<UserState>.shard(of: "u42")
        let keys = snapshot.maps[0].map
        var sharedUsers = 0, sharedKeys = 0
        for s in 0..<ShardedMap<UserState>.shardCount {
            let users = Self.sameStorage(state.users.shards[s], snapshot.allUsers.shards[s])
            let records = Self.sameStorage(state.keyspaces[0].shards[s], keys.shards[s])
            #expect(users == (s != touched), "users shard \(s)")
            #expect(records == (s != touched), "keyspace shard \(s)")
            if users { sharedUsers += 1 }
            if records { sharedKeys += 1 }
        }
        #expect(sharedUsers == ShardedMap<UserState>.shardCount - 1 && sharedKeys == sharedUsers)
        #expect(snapshot.allUsers["u42"]?.lastSeen == t + 42, "the snapshot kept the state it was taken with")
        #expect(state.users["u42"]?.lastSeen == t + 5_000)
    }

    @Test func whileAFullCheckpointIsPendingChangesAreCountedNotCollected() throws {
        let (engine, t) = (try Self.engine(), Self.start)
        var state = Self.built(engine, users: 100, events: 300)
        #expect(state.needsFullCheckpoint)
        #expect(state.dirtyUsers.isEmpty && state.dirtyKeys.allSatisfy(\.isEmpty))
        #expect(state.pendingChangeCount >= 300, "every event counted, so a checkpoint is due")
        let full = state.takeChangeSnapshot()
        #expect(full.full && full.count == 200, "100 users and their 100 keys")
        #expect(state.pendingChangeCount == 0)

        for i in 0..<30 { _ = engine.process(event("u\(i % 10)", at: t + 300 + Int64(i)), coordinates: "t/0/\(300 + i)", state: &state) }
        #expect(state.dirtyUsers.count == 10 && state.dirtyKeys[0].count == 10)
        #expect(state.pendingChangeCount == 20, "after the full one, each changed key once")
        let incremental = state.takeChangeSnapshot()
        #expect(!incremental.full && incremental.count == 20)
    }
}
