import CAMFACore
import CAMFAPolicyFiles
import Foundation
import Testing
import CAMFATestSupport

/// Factors and challenge verification in the engine (Engine.enrollFactor, confirmFactor,
/// verifyChallenge), with the example policies: an extranet login gets a login_risk
/// challenge offering otp and sms. The daemon's check of a code is a closure here; the
/// real one (TOTP against the sealed secret) is tested in CAMFADaemonTests.
@Suite struct FactorTests {
    let set: PolicySet
    let engine: Engine
    let t0: Int64 = 1_767_225_600_000
    let limits = VerificationLimits(attemptsPerChallenge: 3, failuresPerUser: 5, lockout: 60_000)

    init() throws {
        set = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        engine = Engine(policySet: set, challengeKey: testChallengeKey)
    }

    /// "123456" is right (step 42), "999999" a replay, anything else wrong.
    func check(_ code: String) -> (Factor) -> FactorCheck {
        { _ in code == "123456" ? .accepted(step: 42) : code == "999999" ? .replayed : .wrongCode }
    }

    func challenge(_ user: String, at t: Int64, state: inout PartitionState, offset: Int = 1) throws -> PendingChallenge {
        _ = engine.process(event(user, at: t), coordinates: "camfa.ueba/0/\(offset)", state: &state)
        let pending = state.pendingChallenges(user: user, at: t)
        try #require(pending.count == 1, "the extranet login is challenged")
        return pending[0]
    }

    func enrolled(_ user: String, state: inout PartitionState) {
        _ = engine.enrollFactor(Factor(kind: .totp, sealed: [1, 2, 3], enrolledAt: t0 - 10_000), user: user, state: &state)
        _ = engine.confirmFactor(kind: .totp, user: user, time: t0 - 9_000, limits: limits, state: &state, check: check("123456"))
    }

    @Test func aConfirmedFactorClearsTheChallengeAndRemembersTheStep() throws {
        var state = PartitionState(policySet: set)
        _ = engine.enrollFactor(Factor(kind: .totp, sealed: [1, 2, 3], enrolledAt: t0 - 10_000), user: "alice", state: &state)
        #expect(state.factors(user: "alice").map(\.confirmed) == [false])
        let c = try challenge("alice", at: t0, state: &state)
        #expect(c.app == "portal", "the challenge keeps its app: the token's audience")
        let unconfirmed = engine.verifyChallenge(challengeId: c.id, user: "alice", method: .otp, time: t0 + 1_000, limits: limits,
                                                 state: &state, check: check("123456"))
        #expect(unconfirmed.rejection?.code == .noFactor, "an unconfirmed factor answers no challenge")
        #expect(engine.confirmFactor(kind: .totp, user: "alice", time: t0 + 1_500, limits: limits, state: &state, check: check("000000"))
            .rejection?.code == .wrongCode)
        let confirmed = engine.confirmFactor(kind: .totp, user: "alice", time: t0 + 1_600, limits: limits, state: &state, check: { _ in .accepted(step: 41) })
        #expect(confirmed.map(\.confirmed) == .success(true))
        let ok = engine.verifyChallenge(challengeId: c.id, user: "alice", method: .otp, time: t0 + 2_000, limits: limits,
                                        state: &state, check: check("123456"))
        #expect(ok.map(\.challenge.id) == .success(c.id))
        #expect(state.pendingChallenges(user: "alice", at: t0 + 2_001).isEmpty)
        #expect(state.lastVerified(user: "alice") == t0 + 2_000)
        #expect(state.factors(user: "alice").first?.lastUsedStep == 42)
        #expect(state.factors(user: "alice").count == 1)
        // The same challenge cannot be verified twice.
        let again = engine.verifyChallenge(challengeId: c.id, user: "alice", method: .otp, time: t0 + 3_000, limits: limits,
                                           state: &state, check: check("123456"))
        #expect(again.rejection?.code == .unknownChallenge)
    }

    @Test func methodsTheChallengeDidNotOfferAndOtherUsersAreRefused() throws {
        var state = PartitionState(policySet: set)
        enrolled("bob", state: &state)
        let c = try challenge("bob", at: t0, state: &state)
        let email = engine.verifyChallenge(challengeId: c.id, user: "bob", method: .email, time: t0 + 1, limits: limits, state: &state,
                                           check: check("123456"))
        #expect(email.rejection?.code == .methodNotOffered)
        let mallory = engine.verifyChallenge(challengeId: c.id, user: "mallory", method: .otp, time: t0 + 1, limits: limits,
                                             state: &state, check: check("123456"))
        #expect(mallory.rejection?.code == .unknownChallenge)
        let late = engine.verifyChallenge(challengeId: c.id, user: "bob", method: .otp, time: c.expiresAt, limits: limits, state: &state,
                                          check: check("123456"))
        #expect(late.rejection?.code == .expiredChallenge)
        #expect(state.pendingChallenges(user: "bob", at: t0 + 2).count == 1)
    }

    @Test func aChallengeTakesALimitedNumberOfCodes() throws {
        var state = PartitionState(policySet: set)
        enrolled("carol", state: &state)
        let c = try challenge("carol", at: t0, state: &state)
        var lefts: [Int?] = []
        for (i, code) in ["000001", "999999", "000003"].enumerated() {
            let r = engine.verifyChallenge(challengeId: c.id, user: "carol", method: .otp, time: t0 + Int64(i), limits: limits,
                                           state: &state, check: check(code))
            #expect(r.rejection?.code == (code == "999999" ? .replayedCode : .wrongCode))
            lefts.append(r.rejection?.attemptsLeft)
        }
        #expect(lefts == [2, 1, 0])
        #expect(state.verificationCounters(user: "carol").failures == 3)
        let right = engine.verifyChallenge(challengeId: c.id, user: "carol", method: .otp, time: t0 + 10, limits: limits, state: &state,
                                           check: check("123456"))
        #expect(right.rejection?.code == .tooManyAttempts, "even the right code, once the challenge is used up")
        #expect(state.pendingChallenges(user: "carol", at: t0 + 11).count == 1, "the user stays locked")
    }

    @Test func failuresAcrossChallengesLockTheUserOutForAWhile() throws {
        var state = PartitionState(policySet: set)
        enrolled("dave", state: &state)
        var t = t0
        var c = try challenge("dave", at: t, state: &state)
        var last: VerificationRejection?
        for i in 0..<5 {
            if i == 3 {  // a new sign-in, a new challenge: the user's count goes on
                t = c.expiresAt + 1
                c = try challenge("dave", at: t, state: &state, offset: 2)
            }
            last = engine.verifyChallenge(challengeId: c.id, user: "dave", method: .otp, time: t + Int64(i), limits: limits,
                                          state: &state, check: check("000000")).rejection
        }
        #expect(last?.code == .wrongCode)
        #expect(last?.retryAt == t + 4 + 60_000, "the fifth failure in a row locks")
        let during = engine.verifyChallenge(challengeId: c.id, user: "dave", method: .otp, time: t + 30_000, limits: limits,
                                            state: &state, check: check("123456"))
        #expect(during.rejection?.code == .lockedOut)
        #expect(state.verificationCounters(user: "dave").attempts[c.id] == 2, "a locked-out code is not even counted")
        let after = engine.verifyChallenge(challengeId: c.id, user: "dave", method: .otp, time: t + 61_000, limits: limits,
                                           state: &state, check: check("123456"))
        #expect(after.map(\.challenge.id) == .success(c.id))
        #expect(state.verificationCounters(user: "dave") == VerificationCounters(), "success resets the counters")
    }

    @Test func aReleaseEndsALockout() throws {
        var state = PartitionState(policySet: set)
        enrolled("erin", state: &state)
        let c = try challenge("erin", at: t0, state: &state)
        let strict = VerificationLimits(attemptsPerChallenge: 5, failuresPerUser: 1, lockout: 600_000)
        _ = engine.verifyChallenge(challengeId: c.id, user: "erin", method: .otp, time: t0 + 1, limits: strict, state: &state,
                                   check: check("000000"))
        #expect(state.verificationCounters(user: "erin").lockedOutUntil == t0 + 1 + 600_000)
        #expect(engine.releaseUser("erin", state: &state).map(\.id) == [c.id])
        #expect(state.verificationCounters(user: "erin") == VerificationCounters())
        #expect(state.factors(user: "erin").count == 1, "a release keeps the factors")
    }

    @Test func factorsAndCountersSurviveTheCheckpointAndTheDumpHasNoSecret() throws {
        var state = PartitionState(policySet: set)
        engine.enrollFactor(Factor(kind: .totp, sealed: Array("SEALED-SECRET".utf8), enrolledAt: t0 - 5), user: "fay", state: &state)
        _ = engine.confirmFactor(kind: .totp, user: "fay", time: t0 - 4, limits: limits, state: &state, check: { _ in .accepted(step: 7) })
        let c = try challenge("fay", at: t0, state: &state)
        _ = engine.verifyChallenge(challengeId: c.id, user: "fay", method: .otp, time: t0 + 1, limits: limits, state: &state,
                                   check: check("000000"))
        let restored = try PartitionState(restoring: state.serialized(), policySet: set)
        #expect(restored.factors(user: "fay") == state.factors(user: "fay"))
        #expect(restored.factors(user: "fay").first?.lastUsedStep == 7)
        #expect(restored.verificationCounters(user: "fay") == state.verificationCounters(user: "fay"))
        #expect(restored.pendingChallenges(user: "fay", at: t0 + 2) == state.pendingChallenges(user: "fay", at: t0 + 2))
        #expect(restored.pendingChallenges(user: "fay", at: t0 + 2).first?.app == "portal")
        var w = JSONWriter()
        w.beginObject()
        try PartitionState.writeDump(metadata: state.metadataBlob(), entries: [], users: [("fay", state.userBlob("fay")!)], to: &w)
        w.endObject()
        let dump = String(decoding: w.bytes, as: UTF8.self)
        #expect(dump.contains("\"kind\":\"totp\""))
        #expect(dump.contains("\"failures\":1"))
        #expect(!dump.contains("SEALED") && !dump.contains(Data("SEALED-SECRET".utf8).base64EncodedString()), "no sealed secret in a dump")
    }

    /// Attack (review of issue 25): an `enroll` caller, or a replayed enrolment, replaced a
    /// confirmed factor at once, so the user lost a working factor to a secret only the
    /// attacker saw. The confirmed factor now answers until its replacement is confirmed.
    @Test func aReEnrolmentKeepsTheConfirmedFactorUntilTheNewOneIsConfirmed() throws {
        var state = PartitionState(policySet: set)
        enrolled("hal", state: &state)
        #expect(engine.enrollFactor(Factor(kind: .totp, sealed: [7, 7], enrolledAt: t0 - 5_000), user: "hal", state: &state).rejection == nil)
        let c = try challenge("hal", at: t0, state: &state)
        let oldSecret: (Factor) -> FactorCheck = { $0.sealed == [1, 2, 3] ? .accepted(step: 50) : .wrongCode }
        let ok = engine.verifyChallenge(challengeId: c.id, user: "hal", method: .otp, time: t0 + 1, limits: limits, state: &state, check: oldSecret)
        #expect(ok.rejection == nil, "the confirmed factor still answers")
        // Confirming the replacement makes it the factor.
        let confirmed = engine.confirmFactor(kind: .totp, user: "hal", time: t0 + 2, limits: limits, state: &state) {
            $0.sealed == [7, 7] ? .accepted(step: 51) : .wrongCode
        }
        #expect(confirmed.map(\.sealed) == .success([7, 7]))
        #expect(state.factors(user: "hal").map(\.sealed) == [[7, 7]])
    }

    /// Attack: a copy of an older enrolment record (camfa's MAC holds for it) put back into
    /// the input topic brought an old secret back.
    @Test func anEnrolmentOlderThanTheFactorOrLateIsRefused() throws {
        var state = PartitionState(policySet: set)
        enrolled("ivy", state: &state)  // enrolled at t0 - 10 s
        let older = engine.enrollFactor(Factor(kind: .totp, sealed: [6], enrolledAt: t0 - 20_000), user: "ivy", state: &state)
        #expect(older.rejection?.code == .outdated)
        _ = try challenge("ivy", at: t0 + set.options.allowedLateness * 3, state: &state)  // the watermark moves on
        let late = engine.enrollFactor(Factor(kind: .totp, sealed: [6], enrolledAt: t0), user: "ivy", state: &state)
        #expect(late.rejection?.code == .late)
        #expect(state.factors(user: "ivy").map(\.sealed) == [[1, 2, 3]])
    }

    /// Attack: confirmation checked codes without limit, so a caller could burn the user's
    /// current steps (their real code then came back "replayed" and locked them out).
    @Test func confirmationsCountAsFailuresAndRespectTheLockout() throws {
        var state = PartitionState(policySet: set)
        enrolled("jon", state: &state)
        let again = engine.confirmFactor(kind: .totp, user: "jon", time: t0, limits: limits, state: &state, check: check("123456"))
        #expect(again.rejection?.code == .noFactor, "a confirmed factor is not confirmed again")
        _ = engine.enrollFactor(Factor(kind: .totp, sealed: [8], enrolledAt: t0), user: "jon", state: &state)
        for i in 0..<5 {
            _ = engine.confirmFactor(kind: .totp, user: "jon", time: t0 + Int64(i), limits: limits, state: &state, check: check("000000"))
        }
        #expect(state.verificationCounters(user: "jon").lockedOutUntil == t0 + 4 + 60_000)
        let locked = engine.confirmFactor(kind: .totp, user: "jon", time: t0 + 10, limits: limits, state: &state, check: check("123456"))
        #expect(locked.rejection?.code == .lockedOut)
    }

    @Test func aVerifiedResultResetsTheFailures() throws {
        var state = PartitionState(policySet: set)
        enrolled("kim", state: &state)
        let c = try challenge("kim", at: t0, state: &state)
        _ = engine.verifyChallenge(challengeId: c.id, user: "kim", method: .otp, time: t0 + 1, limits: limits, state: &state, check: check("000000"))
        #expect(state.verificationCounters(user: "kim").failures == 1)
        _ = engine.applyMFAResult(challengeId: c.id, user: "kim", method: .sms, verified: true, time: t0 + 2, state: &state)
        #expect(state.verificationCounters(user: "kim") == VerificationCounters())
    }

    @Test func aUserWithAFactorIsNeverSweptForIdleness() throws {
        var state = PartitionState(policySet: set)
        engine.enrollFactor(Factor(kind: .totp, sealed: [9], enrolledAt: t0), user: "gus", state: &state)
        let muchLater = t0 + set.options.userRetention * 3
        _ = engine.process(event("other", at: muchLater), coordinates: "camfa.ueba/0/3", state: &state)
        _ = engine.process(event("other", at: muchLater + set.options.sweepInterval * 2), coordinates: "camfa.ueba/0/4", state: &state)
        #expect(state.factors(user: "gus").count == 1)
    }
}

/// Trusted devices (`rememberDevice`): a verified challenge trusts the challenged event's
/// device for the flow's duration, for events presenting the token from that device.
@Suite struct TrustedDeviceTests {
    static let files = [
        "p.yaml": """
        policy: extranet
        filter: event.behaviorType == "login"
        judgment: '!inCidr(event.ip, "10.20.0.0/16")'
        """,
        "f.yaml": """
        flow: login
        trigger: ueba
        apps: global
        policies: [extranet]
        rememberDevice: 30d
        branches:
          - when: user.device.trusted
            allow: true
          - when: policies.extranet.hit
            mfa: [otp]
        """,
    ]
    let t0: Int64 = 1_767_225_600_000
    let limits = VerificationLimits()
    let token = "a-device-token"

    func login(_ user: String, at t: Int64, ua: String = "Firefox/140", token: String? = nil) -> UEBAEvent {
        var e = event(user, at: t, custom: token.map { [("deviceToken", .string($0))] } ?? [])
        e.ua = ua
        return e
    }

    func actions(_ engine: Engine, _ e: UEBAEvent, _ state: inout PartitionState, offset: Int) -> [String] {
        summary(engine.process(e, coordinates: "camfa.ueba/0/\(offset)", state: &state))
    }

    @Test func aVerifiedDeviceSkipsMFAUntilItExpiresOrIsRevoked() throws {
        let set = try loadSet(Self.files)
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        engine.enrollFactor(Factor(kind: .totp, sealed: [1], confirmed: true, enrolledAt: t0 - 1), user: "alice", state: &state)
        #expect(actions(engine, login("alice", at: t0), &state, offset: 1) == ["login:mfa:otp"])
        let c = try #require(state.pendingChallenges(user: "alice", at: t0).first)
        #expect(c.device == Engine.deviceFingerprint(login("alice", at: t0)))
        let v = engine.verifyChallenge(challengeId: c.id, user: "alice", method: .otp, time: t0 + 1_000, limits: limits,
                                       deviceTokenHash: SHA256.hash(Array(token.utf8)), state: &state) { _ in .accepted(step: 1) }
        #expect(v.map(\.deviceTrustedUntil) == .success(t0 + 1_000 + 30 * 86_400_000))
        // Restored from a checkpoint, the device is still trusted.
        state = try PartitionState(restoring: state.serialized(), policySet: set)
        #expect(actions(engine, login("alice", at: t0 + 60_000, token: token), &state, offset: 2) == ["login:allow"])
        #expect(actions(engine, login("alice", at: t0 + 60_000, token: "another"), &state, offset: 3) == ["login:mfa:otp"], "a wrong token")
        _ = engine.releaseUser("alice", state: &state)
        #expect(actions(engine, login("alice", at: t0 + 70_000, ua: "Chrome/139", token: token), &state, offset: 4) == ["login:mfa:otp"],
                "the token from another device")
        _ = engine.releaseUser("alice", state: &state)
        #expect(actions(engine, login("alice", at: t0 + 29 * 86_400_000, token: token), &state, offset: 5) == ["login:allow"])
        #expect(actions(engine, login("alice", at: t0 + 31 * 86_400_000, token: token), &state, offset: 6) == ["login:mfa:otp"], "expired")
    }

    @Test func aRevocationOrANewFactorForgetsTheDevices() throws {
        let set = try loadSet(Self.files)
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        engine.enrollFactor(Factor(kind: .totp, sealed: [1], confirmed: true, enrolledAt: t0 - 1), user: "bob", state: &state)
        _ = actions(engine, login("bob", at: t0), &state, offset: 1)
        let c = try #require(state.pendingChallenges(user: "bob", at: t0).first)
        _ = engine.verifyChallenge(challengeId: c.id, user: "bob", method: .otp, time: t0 + 1, limits: limits,
                                   deviceTokenHash: SHA256.hash(Array(token.utf8)), state: &state) { _ in .accepted(step: 1) }
        #expect(state.trustedDevices(user: "bob").count == 1)
        #expect(actions(engine, login("bob", at: t0 + 5, token: token), &state, offset: 2) == ["login:allow"])
        #expect(engine.revokeDevices(user: "bob", state: &state) == 1)
        #expect(actions(engine, login("bob", at: t0 + 6, token: token), &state, offset: 3) == ["login:mfa:otp"], "revoked")
        let again = try #require(state.pendingChallenges(user: "bob", at: t0 + 6).first)
        _ = engine.verifyChallenge(challengeId: again.id, user: "bob", method: .otp, time: t0 + 7, limits: limits,
                                   deviceTokenHash: SHA256.hash(Array(token.utf8)), state: &state) { _ in .accepted(step: 2) }
        #expect(state.trustedDevices(user: "bob").count == 1)
        engine.enrollFactor(Factor(kind: .totp, sealed: [2], enrolledAt: t0 + 8), user: "bob", state: &state)
        #expect(state.trustedDevices(user: "bob").count == 1, "an enrolment alone changes no working factor")
        _ = engine.confirmFactor(kind: .totp, user: "bob", time: t0 + 9, limits: limits, state: &state) { _ in .accepted(step: 3) }
        #expect(state.trustedDevices(user: "bob").isEmpty)
        #expect(actions(engine, login("bob", at: t0 + 10, token: token), &state, offset: 4) == ["login:mfa:otp"], "a new factor")
    }

    @Test func aFlowWithoutRememberDeviceTrustsNone() throws {
        var files = Self.files
        files["f.yaml"] = files["f.yaml"]!.replacingOccurrences(of: "rememberDevice: 30d\n", with: "")
        let set = try loadSet(files)
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        engine.enrollFactor(Factor(kind: .totp, sealed: [1], confirmed: true, enrolledAt: t0 - 1), user: "carol", state: &state)
        _ = actions(engine, login("carol", at: t0), &state, offset: 1)
        let c = try #require(state.pendingChallenges(user: "carol", at: t0).first)
        #expect(c.device == nil, "no fingerprint kept when no device is remembered")
        let v = engine.verifyChallenge(challengeId: c.id, user: "carol", method: .otp, time: t0 + 1, limits: limits,
                                       deviceTokenHash: SHA256.hash(Array(token.utf8)), state: &state) { _ in .accepted(step: 1) }
        #expect(v.map(\.deviceTrustedUntil) == .success(nil))
        #expect(state.trustedDevices(user: "carol").isEmpty)
    }
}

extension Result {
    var rejection: Failure? {
        if case .failure(let f) = self { return f }
        return nil
    }
}
