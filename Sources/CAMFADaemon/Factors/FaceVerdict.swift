import CAMFACore
import Foundation

/// What a face provider posts back (`POST /v1/face/verdicts`, signed with `Camfa-Signature`
/// under `factors.face.secretFile`) once it has checked the user: the code camfa sent it
/// (`CodeDelivery`), the user, the challenge (absent for a new factor's confirmation) and
/// whether the face matched. A match answers that code as a typed code answers an email
/// code: once, within `factors.codeLifetime`, only for what it was sent for. A mismatch
/// counts as a wrong code (attempts, lockout, `user.mfa.failures`).
public struct FaceVerdict: Sendable, Equatable {
    public var user: String
    public var code: String
    public var mfaEventId: String?
    public var match: Bool

    public init(user: String, code: String, mfaEventId: String?, match: Bool) {
        self.user = user
        self.code = code
        self.mfaEventId = mfaEventId
        self.match = match
    }

    public init(json: [UInt8]) throws(PipelineRequestError) {
        func invalid(_ message: String, _ field: String? = nil) -> PipelineRequestError { PipelineRequestError(code: .invalid, message: message, field: field) }
        guard case .map(let m)? = try? JSONParser.parse(json, maxDepth: 2) else { throw invalid("the body must be a JSON object") }
        for key in m.keys {
            guard case .string(let k) = key, ["user", "code", "mfaEventId", "verdict"].contains(k) else { throw invalid("unknown field") }
        }
        guard case .string(let user)? = m[string: "user"], !user.isEmpty else { throw invalid("user must be a non-empty string", "user") }
        guard case .string(let code)? = m[string: "code"] else { throw invalid("code must be the code camfa sent", "code") }
        guard case .string(let verdict)? = m[string: "verdict"], ["match", "no-match"].contains(verdict) else {
            throw invalid("verdict must be match or no-match", "verdict")
        }
        var id: String?
        switch m[string: "mfaEventId"] {
        case nil, .null?: id = nil
        case .string(let s)?: id = s
        default: throw invalid("mfaEventId must be a string", "mfaEventId")
        }
        self.init(user: user, code: code, mfaEventId: id, match: verdict == "match")
    }

    /// The code to check: the sent one for a match; for a mismatch one that differs from it
    /// in every digit, so the task refuses it and counts the failure as it counts any.
    public var codeToCheck: String {
        match ? code : String(code.map { $0 == "0" ? "1" : "0" })
    }
}

/// What a verdict did.
public enum FaceVerdictOutcome: Sendable {
    case confirmed(FactorConfirmation)
    case verified(ChallengeVerification)
}

/// The signatures of provider callbacks already processed, kept while their time is within
/// the signature's tolerance: the same signed request a second time is a replay (a captured
/// `no-match` sent again would use up the user's attempts and lock them out). Requests for a
/// user always end at the instance that processes the user (forwarded there), so that
/// instance's memory is the one that counts; a restart forgets at most 10 minutes of them.
/// At `capacity` the oldest are dropped first.
public final class SignatureReplays: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [String: Int64] = [:]
    private let capacity: Int

    public init(capacity: Int = 100_000) { self.capacity = capacity }

    /// Whether `signature` was processed and its window (until epoch s) has not passed.
    public func contains(_ signature: String, now: Int64) -> Bool {
        lock.withLock { (seen[signature] ?? .min) >= now }
    }

    /// Remembers `signature` until `until` (epoch s).
    public func remember(_ signature: String, until: Int64, now: Int64) {
        lock.withLock {
            if seen.count >= capacity {
                seen = seen.filter { $0.value >= now }
                while seen.count >= capacity, let oldest = seen.min(by: { $0.value < $1.value }) { seen.removeValue(forKey: oldest.key) }
            }
            seen[signature] = until
        }
    }
}
