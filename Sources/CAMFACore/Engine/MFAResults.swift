/// MFA results (`authing.security.mfa.result`, `POST /v1/mfa-results`) applied to a
/// partition's state. Pure like the rest of the engine: the result's own time is the only
/// clock, so replaying the input topic gives the same state.
///
/// Rules:
/// - verified, and the user has the challenge pending and unexpired at the result's time:
///   the challenge is cleared and the user's last verification is set (`cleared: true`);
/// - failed, and the challenge is pending and unexpired: it stays pending (`cleared: false`);
///   the failure still counts for policies as an event (see `mfaResultEvent`);
/// - verified again for the challenge the user last verified: accepted without effect
///   (`cleared: false`), because result topics are delivered at least once;
/// - a challenge still held but expired at the result's time: rejected `expired-challenge`;
/// - anything else (never issued, another user's, already cleared and now failed, or expired
///   and already pruned by a later event of the user): rejected `unknown-challenge`.
public struct MFAResultRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case unknownChallenge = "unknown-challenge"
        case expiredChallenge = "expired-challenge"
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

    public init(cleared: Bool, flow: String?) {
        self.cleared = cleared
        self.flow = flow
    }
}

extension Engine {
    /// Applies one MFA result to the user's pending challenges; see the rules above.
    public func applyMFAResult(
        challengeId: String, user: String, verified: Bool, time: Int64, state: inout PartitionState
    ) -> Result<MFAResultApplied, MFAResultRejection> {
        guard var u = state.users[user] else {
            return .failure(MFAResultRejection(code: .unknownChallenge, message: "no pending challenge with this id for the user"))
        }
        guard let i = u.pending.firstIndex(where: { $0.id == challengeId }) else {
            if verified, u.lastVerifiedChallenge == challengeId {
                return .success(MFAResultApplied(cleared: false, flow: nil))
            }
            return .failure(MFAResultRejection(code: .unknownChallenge, message: "no pending challenge with this id for the user"))
        }
        let challenge = u.pending[i]
        guard challenge.expiresAt > time else {
            return .failure(MFAResultRejection(
                code: .expiredChallenge,
                message: "the challenge expired at \(challenge.expiresAt), the result is dated \(time)"))
        }
        guard verified else { return .success(MFAResultApplied(cleared: false, flow: challenge.flow)) }
        u.pending.remove(at: i)
        u.lastVerified = max(u.lastVerified ?? time, time)
        u.lastVerifiedChallenge = challengeId
        state.users[user] = u
        state.recordChange(user: user)
        return .success(MFAResultApplied(cleared: true, flow: challenge.flow))
    }

    /// The event an accepted result becomes for the policies, so they can count MFA
    /// failures (brute force, fatigue): `behaviorType` "mfa", `behaviorResult` "verified" or
    /// "failed", `custom.mfaEventId` and `custom.mfaMethod`. No app: global flows judge it.
    public static func mfaResultEvent(challengeId: String, user: String, method: MFAMethod, verified: Bool, time: Int64) -> UEBAEvent {
        UEBAEvent(requestDate: time, originalIdentity: user, behaviorType: "mfa", behaviorResult: verified ? "verified" : "failed",
                  custom: ValueMap([("mfaEventId", .string(challengeId)), ("mfaMethod", .string(method.rawValue))]))
    }
}

extension PartitionState {
    /// Event time (epoch ms) of the user's last verified MFA result, if the state has one.
    public func lastVerified(user: String) -> Int64? { users[user]?.lastVerified }

    /// Whether the state holds anything about the user.
    public func knows(user: String) -> Bool { users[user] != nil }
}
