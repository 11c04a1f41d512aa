@testable import CAMFACore
import CAMFAPolicyFiles
import Foundation
import Testing
import CAMFATestSupport

/// Issue 22: a producer chooses the keys, so a flood of distinct user ids or IPs must not
/// grow a partition's state without bound, must not evict the keys an attack is counted
/// on, and must never evict a user's lock.
@Suite struct LiveKeyCapTests {
    static let t0: Int64 = 1_767_225_600_000

    static func capped(keys: Int, users: Int) -> EngineOptions {
        var o = EngineOptions()
        o.maxKeysPerKeyspace = keys
        o.maxUsers = users
        return o
    }

    /// Without a cap (the attack) the state holds every key the flood sent; with one it
    /// stays within cap and the evictions are counted.
    @Test func aFloodOfDistinctKeysStaysWithinTheCap() throws {
        let flood = (0..<5_000).map { i in
            event("flood-\(i)", at: Self.t0 + Int64(i) * 10, ip: "10.\(i / 65_536).\(i / 256 % 256).\(i % 256)")
        }
        let open = Engine(policySet: try SweepTests.countingSet(key: "event.ip", atLeast: 5, action: "deny: true"),
                          challengeKey: testChallengeKey)
        var unbounded = PartitionState(policySet: open.policySet)
        for (i, e) in flood.enumerated() { _ = open.process(e, coordinates: "t/0/\(i)", state: &unbounded) }
        #expect(unbounded.liveKeyCount == 10_000, "one IP key and one user per event")

        let set = try SweepTests.countingSet(key: "event.ip", atLeast: 5, action: "deny: true",
                                             options: Self.capped(keys: 640, users: 320))
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        var evicted = [0, 0]
        for (i, e) in flood.enumerated() {
            _ = engine.process(e, coordinates: "t/0/\(i)", state: &state)
            #expect(state.keyspaces[0].count <= 640 && state.userCount <= 320, "event \(i)")
            for (k, n) in state.takeEvictions().enumerated() { evicted[k] += n }
            #expect(state.sweepQueueCount.map { $0 == state.liveKeyCount } ?? true, "every live key queued once, event \(i)")
        }
        #expect(evicted == [5_000 - state.keyspaces[0].count, 5_000 - state.userCount])
        // Eviction goes a batch (a 64th of the cap) at a time.
        #expect(state.keyspaces[0].count >= 640 - 10 && state.userCount >= 320 - 5)
    }

    /// The evicted keys are the least recently updated: an IP that keeps logging in amid a
    /// flood of one-off IPs is still counted, and its policy fires at its fifth login.
    @Test func theAttackersOwnKeyOutlivesTheFlood() throws {
        let set = try SweepTests.countingSet(key: "event.ip", atLeast: 5, action: "deny: true",
                                             options: Self.capped(keys: 64, users: 64))
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        var attackerLogins = 0
        var denied: Int?
        for i in 0..<1_000 {
            let attacker = i % 20 == 19
            let e = event(attacker ? "victim-\(i)" : "flood-\(i)", at: Self.t0 + Int64(i) * 1_000,
                          ip: attacker ? "203.0.113.66" : "10.0.\(i / 256).\(i % 256)")
            let outcome = engine.process(e, coordinates: "t/0/\(i)", state: &state)
            if attacker {
                attackerLogins += 1
                if denied == nil, outcome.decisions.first?.action == .deny { denied = attackerLogins }
            }
        }
        // 2-minute window, one attacker login every 20 s: six in the window from the sixth on.
        #expect(denied == 5)
        #expect(state.keyspaces[0].count <= 64)
    }

    /// Evicting a user that holds a challenge would unlock it: a flood of new users evicts
    /// others, never the locked one, even after the challenge expired unanswered.
    @Test func aLockedUserIsNeverEvicted() throws {
        let policy = "policy: bank\njudgment: event.appId == \"bank\"\n"
        let flow = "flow: f\npolicies: [bank]\nexpiry: 1m\nbranches:\n  - when: policies.bank.hit\n    mfa: [otp]\n"
        let set = try PolicyLoader.loadPolicySet(at: try policyDirectory(["p.yaml": policy, "f.yaml": flow]),
                                                 options: Self.capped(keys: 64, users: 64))
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        #expect(engine.process(event("victim", at: Self.t0, app: "bank"), coordinates: "t/0/0", state: &state)
            .decisions.first?.action == .mfa)
        for i in 1...2_000 {
            _ = engine.process(event("flood-\(i)", at: Self.t0 + Int64(i) * 100), coordinates: "t/0/\(i)", state: &state)
        }
        let end = Self.t0 + 2_000 * 100
        #expect(state.expiredChallenges(user: "victim", at: end).count == 1)
        #expect(state.userCount <= 64)

        // Users all locked: none may go, so the state holds more than the cap.
        var locked = PartitionState(policySet: set)
        for i in 0..<300 {
            _ = engine.process(event("bank-\(i)", at: Self.t0 + Int64(i) * 100, app: "bank"), coordinates: "t/0/\(i)", state: &locked)
        }
        #expect(locked.userCount == 300)
        #expect(locked.takeEvictions().last == 0)
        #expect((0..<300).allSatisfy { !locked.pendingChallenges(user: "bank-\($0)", at: Self.t0).isEmpty
            || !locked.expiredChallenges(user: "bank-\($0)", at: end).isEmpty })
    }

    /// Which keys go depends on the records alone (due time, then key bytes), never on the
    /// process's hash seed or the sweep queue's history: a state restored at random points
    /// evicts exactly as the uninterrupted one.
    @Test(arguments: 0..<8)
    func evictionAfterARestoreEqualsTheUninterruptedRun(seed: Int) throws {
        let set = try SweepTests.examples(Self.capped(keys: 5, users: 6))
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var straight = PartitionState(policySet: set)
        var restarted = PartitionState(policySet: set)
        var rng = SeededRandom(seed: UInt64(seed) &+ 77)
        var evictions = 0
        for (i, e) in CheckpointPropertyTests.stream(seed: UInt64(seed) &+ 900, count: 400).enumerated() {
            let x = engine.process(e, coordinates: "t/0/\(i)", state: &straight)
            if rng.int(10) == 0 { restarted = try PartitionState(restoring: restarted.serialized(), policySet: set) }
            let y = engine.process(e, coordinates: "t/0/\(i)", state: &restarted)
            #expect(x == y, "event \(i)")
            evictions += straight.takeEvictions().reduce(0, +)
            let same = restarted.serialized() == straight.serialized()
            #expect(same, "event \(i): the states differ")
            if let n = straight.pinnedUsers {
                #expect(n == straight.users.reduce(0) { $0 + ($1.value.pending.isEmpty ? 0 : 1) }, "event \(i): locked count")
            }
        }
        #expect(evictions > 50)
    }
}
