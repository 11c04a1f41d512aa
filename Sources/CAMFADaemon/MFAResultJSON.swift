import CAMFACore

/// The JSON form of an MFA result, as subscribers send it on `authing.security.mfa.result`
/// (key: the user) and to `POST /v1/mfa-results`, and as camfa stores it in the input topic:
///
///     {"mfaEventId": "<the MFA event's id>", "user": "<originalIdentity>",
///      "method": "sms|email|otp|face", "result": "verified|failed", "time": <epoch ms>}
///
/// `mfaEventId` is the `id` of the `authing.security.mfa` event (the challenge id), `user`
/// its `subject`. `time` is optional and never believed (README "Security model"): a
/// submitter who could date a result would answer a challenge after it expired. The
/// receiver (the result forwarder, the HTTP server) stamps camfa's own clock as the
/// result's time before it enters the input topic, in the record camfa authenticates, so
/// a replay sees the same time. Other fields are ignored.
extension MFAResult {
    public static let maxJSONBytes = 16 << 10

    /// `receivedAt`: camfa's clock when a subscriber's result arrives, which becomes its
    /// time; nil for the stored form in the input topic, whose time camfa wrote itself.
    public static func decode(json: [UInt8], receivedAt: Int64?) throws(PipelineRequestError) -> MFAResult {
        guard json.count <= maxJSONBytes else {
            throw PipelineRequestError(code: .invalid, message: "an MFA result is at most \(maxJSONBytes) bytes, got \(json.count)")
        }
        let root: Value
        do { root = try JSONParser.parse(json, maxDepth: 8) } catch {
            throw PipelineRequestError(code: .invalid, message: "not JSON: \(error)")
        }
        guard case .map(let m) = root else {
            throw PipelineRequestError(code: .invalid, message: "an MFA result must be a JSON object")
        }
        func string(_ name: String) throws(PipelineRequestError) -> String {
            guard case .string(let s)? = m[string: name], !s.isEmpty else {
                throw PipelineRequestError(code: .invalid, message: "\(name) must be a non-empty string", field: name)
            }
            return s
        }
        let id = try string("mfaEventId"), user = try string("user")
        let methodText = try string("method"), resultText = try string("result")
        guard let method = MFAMethod(rawValue: methodText) else {
            let allowed = MFAMethod.allCases.map(\.rawValue).joined(separator: ", ")
            throw PipelineRequestError(code: .invalid, message: "method must be one of \(allowed)", field: "method")
        }
        guard let outcome = Outcome(rawValue: resultText) else {
            throw PipelineRequestError(code: .invalid, message: "result must be verified or failed", field: "result")
        }
        var submitted: Int64?
        switch m[string: "time"] {
        case .int(let t)?: submitted = t
        case .uint(let t)? where t <= UInt64(Int64.max): submitted = Int64(t)
        case nil, .null?: submitted = nil
        default:
            throw PipelineRequestError(code: .invalid, message: "time must be an integer (epoch milliseconds)", field: "time")
        }
        guard let time = receivedAt ?? submitted else {
            throw PipelineRequestError(code: .invalid, message: "time (epoch milliseconds) is required", field: "time")
        }
        guard time >= 0 else {
            throw PipelineRequestError(code: .invalid, message: "time must not be negative", field: "time")
        }
        return MFAResult(challengeId: id, user: user, method: method, outcome: outcome, time: time)
    }

    /// The intake's bounds (EventLimits): the user id is a key of the state like an event's.
    public func check(_ limits: EventLimits) throws(PipelineRequestError) {
        if user.utf8.count > limits.maxIdentityBytes {
            throw PipelineRequestError(code: .invalid, message: "user: \(user.utf8.count) bytes exceeds engine.maxIdentityBytes \(limits.maxIdentityBytes)", field: "user")
        }
        if challengeId.utf8.count > limits.maxFieldBytes {
            throw PipelineRequestError(code: .invalid, message: "mfaEventId: \(challengeId.utf8.count) bytes exceeds engine.maxFieldBytes \(limits.maxFieldBytes)", field: "mfaEventId")
        }
    }

    /// The normalised form stored in the input topic (every field present).
    public var json: [UInt8] {
        JSONWriter.encode(.map(ValueMap([
            ("mfaEventId", .string(challengeId)), ("user", .string(user)), ("method", .string(method.rawValue)),
            ("result", .string(outcome.rawValue)), ("time", .int(time)),
        ])))
    }
}

/// Header names camfa puts on the records it writes into its own input topic.
enum InputHeaders {
    /// `mfa-result` for an MFA result; absent for UEBA events.
    static let kind = "camfa.kind"
    static let mfaResultKind = "mfa-result"
    /// `release` for an admin release of a user (`{"user", "time"}`).
    static let releaseKind = "release"
    /// Repartitioning (README "Repartitioning"): `repartition` for one event's operations
    /// on the repartition topic, `readings` for a key task's reply on the input topic.
    static let repartitionKind = "repartition"
    static let readingsKind = "readings"
    /// `http` for an API-mode event: it runs the `http` flows.
    static let trigger = "camfa.trigger"
    /// API mode: only this flow.
    static let flow = "camfa.flow"
    /// The id the instance that wrote the record answers its caller by.
    static let request = "camfa.request"
    /// A forwarded MFA result's coordinates in the result topic: `camfa.origin.topic`,
    /// `.partition`, `.offset` (dead letters of the input topic carry them on).
    static let originPrefix = "camfa.origin."
}
