/// MFA results (`authing.security.mfa.result`, `POST /v1/mfa-results`) applied to a
/// partition's state. Pure like the rest of the engine: the result's own time (stamped by
/// camfa's clock when it was received) is the only clock, so replaying the input topic
/// gives the same state.
///
/// Rules:
/// - verified, for a challenge the user has pending and unexpired at the result's time, with
///   a method that challenge offered: the challenge is cleared, with every expired one the
///   user still holds, and the user's last verification is set (`cleared: true`);
/// - failed, for such a challenge: it stays pending (`cleared: false`); the failure still
///   counts for policies as an event (see `mfaResultEvent`);
/// - verified again for the challenge the user last verified: accepted without effect
///   (`cleared: false`), because result topics are delivered at least once;
/// - a challenge held but expired at the result's time: rejected `expired-challenge`, and
///   the challenge stays: expiry is a lock, never a release (README "Security model");
/// - a method the challenge did not offer: rejected `method-not-offered`;
/// - anything else (never issued, another user's, already cleared and now failed):
///   rejected `unknown-challenge`.
/// A rejected result is counted for policies too (`behaviorResult` "rejected"): guessing
/// challenge ids is a brute force like guessing codes.
public struct MFAResultRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case unknownChallenge = "unknown-challenge"
        case expiredChallenge = "expired-challenge"
        case methodNotOffered = "method-not-offered"
    }

    public var code: Code
    public var message: String
    public var description: String { "\(code.rawValue): \(message)" }
}

/// An accepted result.
public struct MFAResultApplied: Sendable, Equatable {
    /// True when this result cleared the pending challenge.
    public var cleared: Bool
    /// The flow that issued the challenge (nil for an idempotent repeat).
    public var flow: String?
    /// What a verified result dropped: its challenge and the expired ones the user still
    /// held (each ends a lock subscribers may hold: an MFA event `cleared`).
    public var dropped: [PendingChallenge]

    public init(cleared: Bool, flow: String?, dropped: [PendingChallenge] = []) {
        self.cleared = cleared
        self.flow = flow
        self.dropped = dropped
    }
}

extension Engine {
    /// Applies one MFA result to the user's pending challenges; see the rules above.
    public func applyMFAResult(
        challengeId: String, user: String, method: MFAMethod, verified: Bool, time: Int64, state: inout PartitionState
    ) -> Result<MFAResultApplied, MFAResultRejection> {
        if verified, let u = state.users[user], u.lastVerifiedChallenge == challengeId, !u.pending.contains(where: { $0.id == challengeId }) {
            return .success(MFAResultApplied(cleared: false, flow: nil))
        }
        let challenge: PendingChallenge
        switch heldChallenge(challengeId, user: user, method: method, time: time, state: state) {
        case .failure(let r): return .failure(r)
        case .success(let c): challenge = c
        }
        guard verified else { return .success(MFAResultApplied(cleared: false, flow: challenge.flow)) }
        var u = state.users[user]!
        let dropped = u.pending.filter { $0.id == challengeId || $0.expiresAt <= time }
        u.pending.removeAll { $0.id == challengeId || $0.expiresAt <= time }
        u.lastVerified = max(u.lastVerified ?? time, time)
        u.lastVerifiedChallenge = challengeId
        // A verified user starts afresh: earlier wrong codes no longer count towards a lockout.
        u.verification = VerificationCounters()
        state.users[user] = u
        state.pinChanged(from: true, to: u.isPinned)
        state.recordChange(user: user)
        return .success(MFAResultApplied(cleared: true, flow: challenge.flow, dropped: dropped))
    }

    /// The user's challenge `challengeId`, pending at `time` and offering `method`: what a
    /// result or a code may answer (the rules above).
    func heldChallenge(_ challengeId: String, user: String, method: MFAMethod, time: Int64, state: PartitionState)
        -> Result<PendingChallenge, MFAResultRejection>
    {
        guard let challenge = state.users[user]?.pending.first(where: { $0.id == challengeId }) else {
            return .failure(MFAResultRejection(code: .unknownChallenge, message: "no pending challenge with this id for the user"))
        }
        guard challenge.expiresAt > time else {
            return .failure(MFAResultRejection(
                code: .expiredChallenge,
                message: "the challenge expired at \(challenge.expiresAt), the result is dated \(time); the user stays locked"))
        }
        guard challenge.methods.contains(method) else {
            return .failure(MFAResultRejection(
                code: .methodNotOffered,
                message: "the challenge offered \(challenge.methods.map(\.rawValue).joined(separator: ",")), not \(method.rawValue)"))
        }
        return .success(challenge)
    }

    /// An operator's explicit release (`POST /v1/users/{id}/release`, admin scope): every
    /// challenge the user holds, pending or expired, is dropped, and a verification lockout
    /// ends (Factors.swift). Returns the challenges.
    public func releaseUser(_ user: String, state: inout PartitionState) -> [PendingChallenge] {
        guard var u = state.users[user], !u.pending.isEmpty || u.verification != VerificationCounters() else { return [] }
        let wasPinned = u.isPinned
        let dropped = u.pending
        u.pending = []
        u.verification = VerificationCounters()
        state.users[user] = u
        state.pinChanged(from: wasPinned, to: u.isPinned)
        state.recordChange(user: user)
        return dropped
    }

    /// The event an accepted result becomes for the policies, so they can count MFA
    /// failures (brute force, fatigue): `behaviorType` "mfa", `behaviorResult` "verified" or
    /// "failed" (or "rejected": unknown, expired or wrong method), `custom.mfaEventId` and `custom.mfaMethod`. No app: global flows judge it.
    public static func mfaResultEvent(challengeId: String, user: String, method: MFAMethod, outcome: String, time: Int64) -> UEBAEvent {
        UEBAEvent(requestDate: time, originalIdentity: user, behaviorType: "mfa", behaviorResult: outcome,
                  custom: ValueMap([("mfaEventId", .string(challengeId)), ("mfaMethod", .string(method.rawValue))]))
    }
}

extension PartitionState {
    /// Event time (epoch ms) of the user's last verified MFA result, if the state has one.
    public func lastVerified(user: String) -> Int64? { users[user]?.lastVerified }

    /// Whether the state holds anything about the user.
    public func knows(user: String) -> Bool { users[user] != nil }
}
