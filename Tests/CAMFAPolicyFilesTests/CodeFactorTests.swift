import CAMFACore
import CAMFAPolicyFiles
import Foundation
import Testing
import CAMFATestSupport

/// Email and SMS factors in the engine (Factors.swift, "Code factors"): the code a factor
/// holds answers only what it was sent for, before it expires, once. The sealing is the
/// daemon's; here a "sealed" code is its bytes, and the check compares them as the daemon's
/// `FactorCheck.sent` does after opening both.
@Suite struct CodeFactorTests {
    let set: PolicySet
    let engine: Engine
    let t0: Int64 = 1_767_225_600_000
    let limits = VerificationLimits(attemptsPerChallenge: 3, failuresPerUser: 5, lockout: 60_000, codeLifetime: 300_000, sendsPerChallenge: 2)

    init() throws {
        set = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        engine = Engine(policySet: set, challengeKey: testChallengeKey)
    }

    func check(_ code: String) -> (Factor) -> FactorCheck {
        { f in f.code?.sealed == Array(code.utf8) ? .accepted(step: nil) : .wrongCode }
    }

    /// An extranet login: login_risk offers otp and sms.
    func challenge(_ user: String, at t: Int64, state: inout PartitionState, offset: Int) throws -> PendingChallenge {
        let e = try UEBAEvent.decode(json: Array(#"{"appId":"portal","requestDate":\#(t),"ip":"203.0.113.9","originalIdentity":"\#(user)","behaviorType":"login","behaviorResult":"success"}"#.utf8))
        _ = engine.process(e, coordinates: "camfa.ueba/0/\(offset)", state: &state)
        return try #require(state.pendingChallenges(user: user, at: t).last)
    }

    func enrolledSMS(_ user: String, state: inout PartitionState) {
        let sent = SentCode(sealed: Array("111111".utf8), challengeId: nil, expiresAt: t0 - 10_000 + limits.codeLifetime)
        _ = engine.enrollFactor(Factor(kind: .sms, sealed: Array("+14155550123".utf8), enrolledAt: t0 - 10_000, code: sent), user: user, state: &state)
        _ = engine.confirmFactor(kind: .sms, user: user, time: t0 - 9_000, limits: limits, state: &state, check: check("111111"))
    }

    @Test func theEnrolmentCodeConfirmsOnceAndOnlyBeforeItExpires() throws {
        var state = PartitionState(policySet: set)
        let sent = SentCode(sealed: Array("111111".utf8), challengeId: nil, expiresAt: t0 + 300_000)
        _ = engine.enrollFactor(Factor(kind: .email, sealed: Array("a@example.com".utf8), enrolledAt: t0, code: sent), user: "ann", state: &state)
        #expect(engine.confirmFactor(kind: .email, user: "ann", time: t0 + 1, limits: limits, state: &state, check: check("222222")).rejection?.code == .wrongCode)
        #expect(engine.confirmFactor(kind: .email, user: "ann", time: t0 + 300_000, limits: limits, state: &state, check: check("111111")).rejection?.code == .expiredCode)
        let ok = engine.confirmFactor(kind: .email, user: "ann", time: t0 + 2, limits: limits, state: &state, check: check("111111"))
        #expect(ok.map(\.confirmed) == .success(true))
        #expect(state.factors(user: "ann").first?.code == nil, "the code is used up")
        #expect(state.verificationCounters(user: "ann").failures == 0)
    }

    @Test func aSentCodeAnswersItsChallengeOnceAndNoOther() throws {
        var state = PartitionState(policySet: set)
        enrolledSMS("ben", state: &state)
        let c = try challenge("ben", at: t0, state: &state, offset: 1)
        let none = engine.verifyChallenge(challengeId: c.id, user: "ben", method: .sms, time: t0 + 1, limits: limits, state: &state, check: check("111111"))
        #expect(none.rejection?.code == .noCode, "the confirmation's code answers no challenge, and none was sent")
        let issued = engine.issueCode(Array("333333".utf8), challengeId: c.id, user: "ben", method: .sms, time: t0 + 2, limits: limits, state: &state)
        #expect(issued.map(\.sealed) == .success(Array("+14155550123".utf8)), "the task answers the sealed number to send to")
        #expect(state.factors(user: "ben").first?.code?.expiresAt == t0 + 2 + limits.codeLifetime)
        let wrong = engine.verifyChallenge(challengeId: c.id, user: "ben", method: .sms, time: t0 + 3, limits: limits, state: &state, check: check("444444"))
        #expect(wrong.rejection?.code == .wrongCode && wrong.rejection?.attemptsLeft == 2)
        let ok = engine.verifyChallenge(challengeId: c.id, user: "ben", method: .sms, time: t0 + 4, limits: limits, state: &state, check: check("333333"))
        #expect(ok.map(\.challenge.id) == .success(c.id))
        #expect(state.pendingChallenges(user: "ben", at: t0 + 5).isEmpty)
        #expect(state.factors(user: "ben").first?.code == nil, "single use")
        // A second challenge: the first one's code does not answer it.
        let d = try challenge("ben", at: t0 + 86_400_000, state: &state, offset: 2)
        let old = engine.verifyChallenge(challengeId: d.id, user: "ben", method: .sms, time: t0 + 86_400_001, limits: limits, state: &state, check: check("333333"))
        #expect(old.rejection?.code == .noCode)
    }

    @Test func sendsAreLimitedAndAnExpiredCodeIsRefused() throws {
        var state = PartitionState(policySet: set)
        enrolledSMS("cy", state: &state)
        let c = try challenge("cy", at: t0, state: &state, offset: 1)
        #expect(engine.issueCode(Array("555555".utf8), challengeId: c.id, user: "cy", method: .sms, time: t0 + 1, limits: limits, state: &state).rejection == nil)
        let expired = engine.verifyChallenge(challengeId: c.id, user: "cy", method: .sms, time: t0 + 1 + limits.codeLifetime, limits: limits,
                                             state: &state, check: check("555555"))
        #expect(expired.rejection?.code == .expiredCode)
        #expect(state.verificationCounters(user: "cy").failures == 0, "an expired code is no guess")
        #expect(engine.issueCode(Array("666666".utf8), challengeId: c.id, user: "cy", method: .sms, time: t0 + 2, limits: limits, state: &state).rejection == nil)
        let third = engine.issueCode(Array("777777".utf8), challengeId: c.id, user: "cy", method: .sms, time: t0 + 3, limits: limits, state: &state)
        #expect(third.rejection?.code == .tooManySends)
        #expect(state.factors(user: "cy").first?.code?.sealed == Array("666666".utf8), "the newest code stands; the old one is replaced")
        #expect(engine.verifyChallenge(challengeId: c.id, user: "cy", method: .sms, time: t0 + 4, limits: limits, state: &state, check: check("555555"))
            .rejection?.code == .wrongCode, "a replaced code no longer answers")
        #expect(engine.issueCode(Array("1".utf8), challengeId: c.id, user: "cy", method: .otp, time: t0 + 5, limits: limits, state: &state)
            .rejection?.code == .notSendable)
        #expect(engine.issueCode(Array("1".utf8), challengeId: c.id, user: "cy", method: .email, time: t0 + 5, limits: limits, state: &state)
            .rejection?.code == .methodNotOffered, "login_risk offers otp and sms")
        #expect(engine.issueCode(Array("1".utf8), challengeId: "c-none", user: "cy", method: .sms, time: t0 + 5, limits: limits, state: &state)
            .rejection?.code == .unknownChallenge)
    }

    @Test func noCodeIsSentWhileLockedOutOrToAnUnconfirmedFactor() throws {
        var state = PartitionState(policySet: set)
        let sent = SentCode(sealed: Array("111111".utf8), challengeId: nil, expiresAt: t0 + 300_000)
        _ = engine.enrollFactor(Factor(kind: .sms, sealed: Array("+14155550123".utf8), enrolledAt: t0 - 5, code: sent), user: "dee", state: &state)
        let c = try challenge("dee", at: t0, state: &state, offset: 1)
        #expect(engine.issueCode(Array("1".utf8), challengeId: c.id, user: "dee", method: .sms, time: t0 + 1, limits: limits, state: &state)
            .rejection?.code == .noFactor)
        _ = engine.confirmFactor(kind: .sms, user: "dee", time: t0 + 2, limits: limits, state: &state, check: check("111111"))
        #expect(engine.issueCode(Array("888888".utf8), challengeId: c.id, user: "dee", method: .sms, time: t0 + 3, limits: limits, state: &state).rejection == nil)
        for i in 0..<3 {
            _ = engine.verifyChallenge(challengeId: c.id, user: "dee", method: .sms, time: t0 + 4 + Int64(i), limits: limits, state: &state, check: check("000000"))
        }
        let used = engine.issueCode(Array("9".utf8), challengeId: c.id, user: "dee", method: .sms, time: t0 + 10, limits: limits, state: &state)
        #expect(used.rejection?.code == .tooManyAttempts, "a challenge whose attempts are used up gets no new code")
    }

    @Test func aSentCodeSurvivesTheCheckpointAndIsNotInTheDump() throws {
        var state = PartitionState(policySet: set)
        enrolledSMS("eve", state: &state)
        let c = try challenge("eve", at: t0, state: &state, offset: 1)
        _ = engine.issueCode(Array("SEALED-CODE".utf8), challengeId: c.id, user: "eve", method: .sms, time: t0 + 1, limits: limits, state: &state)
        let restored = try PartitionState(restoring: state.serialized(), policySet: set)
        #expect(restored.factors(user: "eve") == state.factors(user: "eve"))
        #expect(restored.factors(user: "eve").first?.code?.challengeId == c.id)
        var w = JSONWriter()
        w.beginObject()
        try PartitionState.writeDump(metadata: state.metadataBlob(), entries: [], users: [("eve", state.userBlob("eve")!)], to: &w)
        w.endObject()
        let dump = String(decoding: w.bytes, as: UTF8.self)
        #expect(dump.contains("\"kind\":\"sms\""))
        #expect(!dump.contains("SEALED") && !dump.contains(Data("SEALED-CODE".utf8).base64EncodedString()) && !dump.contains("4155550123"))
    }
}
