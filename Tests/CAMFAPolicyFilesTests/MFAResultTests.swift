import CAMFACore
import CAMFAPolicyFiles
import Foundation
import Testing
import CAMFATestSupport

/// MFA results applied to partition state (Engine.applyMFAResult) and counted by policies,
/// with the example policies: a login from outside the office network gets an MFA
/// challenge from login_risk (extranet), whose id the results answer.
@Suite struct MFAResultTests {
    let set: PolicySet
    let engine: Engine
    let t0: Int64 = 1_767_225_600_000

    init() throws {
        set = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        engine = Engine(policySet: set, challengeKey: testChallengeKey)
    }

    /// Processes an extranet login of `user` and returns the challenge login_risk issued.
    func challenge(_ user: String, at t: Int64, state: inout PartitionState, offset: Int = 1) throws -> Decision {
        let outcome = engine.process(event(user, at: t), coordinates: "camfa.ueba/0/\(offset)", state: &state)
        guard case .decided(let ds) = outcome, let d = ds.first(where: { $0.flow == "login_risk" }) else {
            Issue.record("no login_risk decision: \(summary(outcome))")
            throw CancellationError()
        }
        #expect(d.issuesChallenge)
        #expect(d.challengeId != nil)
        return d
    }

    @Test func verifiedClearsThePendingChallenge() throws {
        var state = PartitionState(policySet: set)
        let d = try challenge("alice", at: t0, state: &state)
        let pending = state.pendingChallenges(user: "alice", at: t0 + 1)
        #expect(pending.map(\.id) == [d.challengeId!])
        let r = engine.applyMFAResult(challengeId: d.challengeId!, user: "alice", method: .sms, verified: true, time: t0 + 30_000, state: &state)
        #expect(r == .success(MFAResultApplied(cleared: true, flow: "login_risk", dropped: pending)), "what it cleared, for the cleared event")
        #expect(state.pendingChallenges(user: "alice", at: t0 + 30_001).isEmpty)
        #expect(state.lastVerified(user: "alice") == t0 + 30_000)
        #expect(state.pendingChangeCount > 0)
    }

    @Test func failedKeepsItPending() throws {
        var state = PartitionState(policySet: set)
        let d = try challenge("bob", at: t0, state: &state)
        let r = engine.applyMFAResult(challengeId: d.challengeId!, user: "bob", method: .sms, verified: false, time: t0 + 5_000, state: &state)
        #expect(r == .success(MFAResultApplied(cleared: false, flow: "login_risk")))
        #expect(state.pendingChallenges(user: "bob", at: t0 + 5_001).map(\.id) == [d.challengeId!])
        #expect(state.lastVerified(user: "bob") == nil)
    }

    @Test func unknownIdsAndOtherUsersAreRejected() throws {
        var state = PartitionState(policySet: set)
        let d = try challenge("carol", at: t0, state: &state)
        let unknown = engine.applyMFAResult(challengeId: "no-such-id", user: "carol", method: .sms, verified: true, time: t0 + 1_000, state: &state)
        #expect(unknown.rejectionCode == .unknownChallenge)
        // The id exists, but for another user.
        let other = engine.applyMFAResult(challengeId: d.challengeId!, user: "mallory", method: .sms, verified: true, time: t0 + 1_000, state: &state)
        #expect(other.rejectionCode == .unknownChallenge)
        #expect(state.pendingChallenges(user: "carol", at: t0 + 1_001).count == 1)
    }

    @Test func resultsAfterExpiryAreRejected() throws {
        var state = PartitionState(policySet: set)
        let d = try challenge("dave", at: t0, state: &state)
        let late = engine.applyMFAResult(challengeId: d.challengeId!, user: "dave", method: .sms, verified: true, time: d.expiresAt!, state: &state)
        #expect(late.rejectionCode == .expiredChallenge)
        #expect(state.lastVerified(user: "dave") == nil)
        let inTime = engine.applyMFAResult(challengeId: d.challengeId!, user: "dave", method: .sms, verified: true, time: d.expiresAt! - 1, state: &state)
        #expect(inTime.map(\.dropped.count) == .success(1))
        #expect(inTime.map(\.cleared) == .success(true))
    }

    /// Attack (issue 22): ignoring the MFA prompt until it expired used to unlock the user:
    /// the next event dropped the expired challenge and the sweep forgot the user.
    @Test func anExpiredChallengeKeepsTheUserLockedUntilAVerifiedResultOrARelease() throws {
        var state = PartitionState(policySet: set)
        let first = try challenge("gina", at: t0, state: &state)
        let afterExpiry = first.expiresAt! + 1
        #expect(state.pendingChallenges(user: "gina", at: afterExpiry).isEmpty)
        #expect(state.expiredChallenges(user: "gina", at: afterExpiry).map(\.id) == [first.challengeId!])
        // An allowed intranet login later does not unlock her.
        let intranet = UEBAEvent(appId: "portal", requestDate: afterExpiry, ip: "10.20.1.1", originalIdentity: "gina",
                                 behaviorType: "login", behaviorResult: "success")
        _ = engine.process(intranet, coordinates: "camfa.ueba/0/2", state: &state)
        #expect(state.expiredChallenges(user: "gina", at: afterExpiry).map(\.id) == [first.challengeId!])
        // Nor does idleness: the sweep keeps a locked user past the user retention.
        let muchLater = afterExpiry + set.options.userRetention * 2
        _ = engine.process(event("other", at: muchLater), coordinates: "camfa.ueba/0/3", state: &state)
        _ = engine.process(event("other", at: muchLater + set.options.sweepInterval * 2), coordinates: "camfa.ueba/0/4", state: &state)
        #expect(state.knows(user: "gina"))
        #expect(state.expiredChallenges(user: "gina", at: muchLater).count == 1)
        // The expired challenge cannot be answered.
        let late = engine.applyMFAResult(challengeId: first.challengeId!, user: "gina", method: .sms, verified: true, time: muchLater, state: &state)
        #expect(late.rejectionCode == .expiredChallenge)
        // A verified result for a new challenge clears it and the expired one.
        let second = try challenge("gina", at: muchLater + 200_000, state: &state, offset: 5)
        #expect(second.challengeId != first.challengeId)
        let ok = engine.applyMFAResult(challengeId: second.challengeId!, user: "gina", method: second.methods[0], verified: true,
                                       time: muchLater + 201_000, state: &state)
        #expect(ok.isCleared == true)
        #expect(state.expiredChallenges(user: "gina", at: muchLater + 10_000_000).isEmpty)
        #expect(state.pendingChallenges(user: "gina", at: muchLater + 201_001).isEmpty)
        // An explicit release drops whatever the user holds.
        let third = try challenge("gina", at: muchLater + 10_000_000, state: &state, offset: 6)
        #expect(engine.releaseUser("gina", state: &state).count == 1)
        #expect(state.pendingChallenges(user: "gina", at: third.expiresAt! - 1).isEmpty)
    }

    /// Attack (issue 22): a result was accepted for any method, so an SMS-only challenge
    /// could be closed by a result claiming a factor the flow never offered.
    @Test func aResultMustNameAMethodTheChallengeOffered() throws {
        var state = PartitionState(policySet: set)
        let d = try challenge("hank", at: t0, state: &state)
        let offered = Set(d.methods)
        let other = try #require(MFAMethod.allCases.first { !offered.contains($0) })
        let wrong = engine.applyMFAResult(challengeId: d.challengeId!, user: "hank", method: other, verified: true, time: t0 + 1_000, state: &state)
        #expect(wrong.rejectionCode == .methodNotOffered)
        #expect(state.pendingChallenges(user: "hank", at: t0 + 1_001).count == 1)
        let right = engine.applyMFAResult(challengeId: d.challengeId!, user: "hank", method: d.methods[0], verified: true, time: t0 + 2_000, state: &state)
        #expect(right.isCleared == true)
    }

    @Test func aRepeatedVerifiedResultIsAcceptedWithoutEffectAlsoAfterRestore() throws {
        var state = PartitionState(policySet: set)
        let d = try challenge("erin", at: t0, state: &state)
        let id = d.challengeId!
        #expect(engine.applyMFAResult(challengeId: id, user: "erin", method: .sms, verified: true, time: t0 + 10_000, state: &state).isCleared == true)
        // Redelivered after a checkpoint and restore: still recognised.
        var restored = try PartitionState(restoring: state.serialized(), policySet: set)
        let again = engine.applyMFAResult(challengeId: id, user: "erin", method: .sms, verified: true, time: t0 + 20_000, state: &restored)
        #expect(again == .success(MFAResultApplied(cleared: false, flow: nil)))
        #expect(restored.lastVerified(user: "erin") == t0 + 10_000)
        // A failure for a cleared challenge is not a known pending one.
        let failed = engine.applyMFAResult(challengeId: id, user: "erin", method: .sms, verified: false, time: t0 + 20_000, state: &restored)
        #expect(failed.rejectionCode == .unknownChallenge)
    }

    @Test func policiesCountFailedResults() throws {
        var state = PartitionState(policySet: set)
        let d = try challenge("frank", at: t0, state: &state)
        func login(at t: Int64, offset: Int) -> Decision? {
            let outcome = engine.process(event("frank", at: t), coordinates: "camfa.ueba/0/\(offset)", trigger: .http, state: &state)
            guard case .decided(let ds) = outcome else { return nil }
            return ds.first { $0.flow == "api_login" }
        }
        for i in 1...4 {
            let t = t0 + Int64(i) * 1_000
            #expect(engine.applyMFAResult(challengeId: d.challengeId!, user: "frank", method: .sms, verified: false, time: t, state: &state).isCleared == false)
            let e = Engine.mfaResultEvent(challengeId: d.challengeId!, user: "frank", method: .otp, outcome: "failed", time: t)
            _ = engine.process(e, coordinates: "camfa.ueba/0/\(100 + i)", state: &state)
        }
        // Four failures: the API login is judged by risk (extranet → MFA), not denied.
        #expect(login(at: t0 + 10_000, offset: 200)?.action == .mfa)
        let fifth = Engine.mfaResultEvent(challengeId: d.challengeId!, user: "frank", method: .otp, outcome: "failed", time: t0 + 11_000)
        _ = engine.process(fifth, coordinates: "camfa.ueba/0/105", state: &state)
        let denied = login(at: t0 + 12_000, offset: 201)
        #expect(denied?.action == .deny)
        #expect(denied?.firedPolicies.map(\.policy).contains("mfa_fatigue") == true)
        // Verified results are not failures: they do not count.
        var other = PartitionState(policySet: set)
        for i in 1...6 {
            let e = Engine.mfaResultEvent(challengeId: "x", user: "frank", method: .sms, outcome: "verified", time: t0 + Int64(i) * 1_000)
            _ = engine.process(e, coordinates: "camfa.ueba/0/\(i)", state: &other)
        }
        let outcome = engine.process(event("frank", at: t0 + 10_000), coordinates: "camfa.ueba/0/300", trigger: .http, state: &other)
        #expect(summary(outcome) == ["api_login:mfa:sms,email"])
    }
}

extension Result where Success == MFAResultApplied, Failure == MFAResultRejection {
    var rejectionCode: MFAResultRejection.Code? {
        if case .failure(let r) = self { return r.code }
        return nil
    }

    var isCleared: Bool? {
        if case .success(let a) = self { return a.cleared }
        return nil
    }
}

/// Attack (issue 22): user ids compared as Swift strings, so "é" (U+00E9) and "e" + U+0301,
/// two ids a directory may well hold for two people, shared one user's state: verifying one
/// unlocked the other.
@Suite struct ExactUserIDTests {
    @Test func canonicallyEquivalentIdsAreDifferentUsers() throws {
        let set = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        let composed = "jos\u{E9}", decomposed = "jose\u{301}"
        #expect(composed == decomposed)  // what Swift's String says
        var state = PartitionState(policySet: set)
        let t0: Int64 = 1_767_225_600_000
        guard case .decided(let a) = engine.process(event(composed, at: t0), coordinates: "c/0/1", state: &state),
              case .decided(let b) = engine.process(event(decomposed, at: t0 + 1), coordinates: "c/0/2", state: &state),
              let ca = a.first(where: { $0.issuesChallenge }), let cb = b.first(where: { $0.issuesChallenge }) else {
            Issue.record("no challenges"); return
        }
        // The second is a challenge of its own, not the first one's cooldown.
        #expect(!cb.suppressedByCooldown)
        #expect(state.userCount == 2)
        let ok = engine.applyMFAResult(challengeId: ca.challengeId!, user: composed, method: ca.methods[0], verified: true,
                                       time: t0 + 2, state: &state)
        #expect(ok.isCleared == true)
        #expect(state.pendingChallenges(user: composed, at: t0 + 3).isEmpty)
        #expect(state.pendingChallenges(user: decomposed, at: t0 + 3).map(\.id) == [cb.challengeId!])
        // And a checkpoint keeps them apart.
        let restored = try PartitionState(restoring: state.serialized(), policySet: set)
        #expect(restored.userCount == 2)
        #expect(restored.pendingChallenges(user: decomposed, at: t0 + 3).count == 1)
        #expect(restored.pendingChallenges(user: composed, at: t0 + 3).isEmpty)
    }
}
