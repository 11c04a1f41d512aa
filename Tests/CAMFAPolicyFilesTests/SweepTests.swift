@testable import CAMFACore
import CAMFAPolicyFiles
import Foundation
import Testing
import CAMFATestSupport

/// The sweep looks only at keys that are due (`PartitionState.sweepQueue`); these check
/// that it still drops what it should, never anything a later event could read, and that
/// a queue rebuilt after a restore sweeps exactly like the uninterrupted one.
@Suite struct SweepTests {
    static func examples(_ options: EngineOptions = EngineOptions()) throws -> PolicySet {
        try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path, options: options)
    }

    /// One policy `p` counting events per `key` in a 2-minute window, hit at `atLeast`, and
    /// one flow `f` whose branch on that hit is `action` (YAML, e.g. `mfa: [otp]`).
    static func countingSet(key: String, atLeast: Int, action: String, flowSettings: String = "",
                            options: EngineOptions = EngineOptions()) throws -> PolicySet {
        let policy = "policy: p\nstatistics:\n  - name: n\n    key: \(key)\n    window: 2m\n    aggregation: count\njudgment: stats.n >= \(atLeast)\n"
        let flow = "flow: f\npolicies: [p]\n\(flowSettings)branches:\n  - when: policies.p.hit\n    \(action)\n"
        return try PolicyLoader.loadPolicySet(at: try policyDirectory(["p.yaml": policy, "f.yaml": flow]), options: options)
    }

    @Test(arguments: 0..<12)
    func sweepingChangesNoDecision(seed: Int) throws {
        var never = EngineOptions()
        never.sweepInterval = 1 << 50  // one sweep at the first event, then none
        let swept = Engine(policySet: try Self.examples(), challengeKey: testChallengeKey)
        let kept = Engine(policySet: try Self.examples(never), challengeKey: testChallengeKey)
        var a = PartitionState(policySet: swept.policySet)
        var b = PartitionState(policySet: kept.policySet)
        var keysFewer = false
        for (i, e) in CheckpointPropertyTests.stream(seed: UInt64(seed), count: 400).enumerated() {
            let x = swept.process(e, coordinates: "t/0/\(i)", state: &a)
            let y = kept.process(e, coordinates: "t/0/\(i)", state: &b)
            #expect(x == y, "event \(i)")
            if a.liveKeyCount < b.liveKeyCount { keysFewer = true }
        }
        // The streams have gaps of up to an hour: the 2- and 10-minute windows' keys go.
        #expect(keysFewer)
    }

    @Test(arguments: 0..<12)
    func restoringAtManyPointsSweepsLikeTheUninterruptedRun(seed: Int) throws {
        var options = EngineOptions()
        options.userRetention = 2 * 3_600_000  // users are swept within the stream too
        let set = try Self.examples(options)
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        let events = CheckpointPropertyTests.stream(seed: UInt64(seed) &+ 500, count: 400)
        var straight = PartitionState(policySet: set)
        var restarted = PartitionState(policySet: set)
        var rng = SeededRandom(seed: UInt64(seed))
        var usersSwept = false
        var restores = 0
        for (i, e) in events.enumerated() {
            let usersBefore = straight.userCount
            let x = engine.process(e, coordinates: "t/0/\(i)", state: &straight)
            if straight.userCount < usersBefore { usersSwept = true }
            if rng.int(15) == 0 {
                restarted = try PartitionState(restoring: restarted.serialized(), policySet: set)
                restores += 1
            }
            let y = engine.process(e, coordinates: "t/0/\(i)", state: &restarted)
            #expect(x == y, "event \(i)")
            // Most challenges are answered: a user holding one is never swept (an
            // expired challenge is a lock), the others go once idle.
            for d in x.decisions where d.issuesChallenge && !d.suppressedByCooldown && i % 16 != 0 {
                _ = engine.applyMFAResult(challengeId: d.challengeId!, user: e.originalIdentity, method: d.methods[0], verified: true,
                                          time: e.requestDate, state: &straight)
                _ = engine.applyMFAResult(challengeId: d.challengeId!, user: e.originalIdentity, method: d.methods[0], verified: true,
                                          time: e.requestDate, state: &restarted)
            }
            #expect(restarted.liveKeyCount == straight.liveKeyCount, "event \(i)")
            // Every live key and user is queued once: none is forgotten, none piles up.
            #expect(straight.sweepQueueCount == straight.liveKeyCount, "event \(i)")
        }
        #expect(restarted.serialized() == straight.serialized())
        #expect(restores > 10)
        #expect(usersSwept)
    }

    /// A key whose windows are empty at the watermark can still be read by a late event
    /// (within `allowedLateness`): it stays until no accepted event can reach its data.
    @Test func aLateEventStillFindsTheDataOfAnExpiredLookingKey() throws {
        var never = EngineOptions()
        never.sweepInterval = 1 << 50
        let swept = Engine(policySet: try Self.countingSet(key: "event.ip", atLeast: 2, action: "deny: true"), challengeKey: testChallengeKey)
        let kept = Engine(policySet: try Self.countingSet(key: "event.ip", atLeast: 2, action: "deny: true", options: never), challengeKey: testChallengeKey)
        var a = PartitionState(policySet: swept.policySet), b = PartitionState(policySet: kept.policySet)
        let t0: Int64 = 1_767_225_600_000
        // X at t0; another IP 4 minutes on (X's window is empty by then, and a sweep runs);
        // X again at t0 + 1 min: 3 minutes late, within the default 5, so it counts t0 too.
        let events = [event("u", at: t0, ip: "198.51.100.1"), event("v", at: t0 + 240_000, ip: "198.51.100.2"),
                      event("u", at: t0 + 60_000, ip: "198.51.100.1")]
        var last: [EvaluationOutcome] = []
        for (i, e) in events.enumerated() {
            last = [swept.process(e, coordinates: "c/\(i)", state: &a), kept.process(e, coordinates: "c/\(i)", state: &b)]
            #expect(last[0] == last[1], "event \(i)")
        }
        #expect(last[0].decisions.first?.action == .deny)
    }

    /// Expiry is not a release (issue 22): an idle user whose challenge expired unanswered
    /// stays, locked, past the user retention; released, the next sweep drops them.
    @Test func anIdleUserStaysWhileAChallengeIsHeldAndGoesOnceReleased() throws {
        var options = EngineOptions()
        options.userRetention = 3_600_000
        let set = try Self.countingSet(key: "event.originalIdentity", atLeast: 1, action: "mfa: [otp]",
                                       flowSettings: "expiry: 3h\n", options: options)
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        let t0: Int64 = 1_767_225_600_000
        guard case .decided(let d) = engine.process(event("idle", at: t0), coordinates: "c/0", state: &state) else {
            Issue.record("not decided"); return
        }
        #expect(d.first?.action == .mfa)
        // Two hours on, past the retention, but the challenge is live until t0 + 3 h.
        _ = engine.process(event("other", at: t0 + 2 * 3_600_000), coordinates: "c/1", state: &state)
        #expect(state.pendingChallenges(user: "idle", at: t0 + 2 * 3_600_000).count == 1)
        #expect(state.userCount == 2)
        // Expired and far past the retention: still there, still locked.
        _ = engine.process(event("other", at: t0 + 9 * 3_600_000), coordinates: "c/2", state: &state)
        #expect(state.userCount == 2)
        #expect(state.expiredChallenges(user: "idle", at: t0 + 9 * 3_600_000).count == 1)
        // Released: the next sweep past the retention drops the user (and the 2-minute
        // window's keys).
        #expect(engine.releaseUser("idle", state: &state).count == 1)
        _ = engine.process(event("other", at: t0 + 20 * 3_600_000), coordinates: "c/3", state: &state)
        _ = engine.process(event("other", at: t0 + 30 * 3_600_000), coordinates: "c/4", state: &state)
        #expect(state.userCount == 1)
        #expect(state.liveKeyCount == 2, "the other user and its logins key")
    }
}
