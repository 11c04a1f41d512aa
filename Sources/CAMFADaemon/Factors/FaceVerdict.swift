import CAMFACore

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
