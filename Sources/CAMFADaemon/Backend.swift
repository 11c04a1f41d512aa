import CAMFACore

/// What the HTTP surface (CAMFAServer) asks of the running daemon. `Pipeline` is the one
/// implementation: every answer comes from the poll thread's partition state, so API mode,
/// the user status and MFA results see and change the same state as the event flow (one
/// source of truth, checkpointed with it). Tests of the HTTP layer alone may implement it.
public protocol CAMFABackend: AnyObject, Sendable {
    /// API mode: runs one UEBA event through the engine (the `http`-trigger flows of its
    /// app, or only `flow`) and answers with the decisions. The event goes through the
    /// input topic like any other, so it is counted once, in order, and survives a crash.
    func evaluate(eventJSON: [UInt8], flow: String?, timeout: Double) async throws(PipelineRequestError) -> Evaluation
    /// The user's MFA state now: unexpired pending challenges and the last verification.
    func mfaStatus(user: String, timeout: Double) async throws(PipelineRequestError) -> MFAStatus
    /// An MFA outcome reported by a subscriber (`authing.security.mfa.result` or HTTP).
    func submitMFAResult(json: [UInt8], timeout: Double) async throws(PipelineRequestError) -> MFAResultOutcome
    /// An operator's explicit release of the user (admin scope): every challenge the user
    /// holds, pending or expired, is dropped. Through the input topic, like a result.
    func releaseUser(user: String, timeout: Double) async throws(PipelineRequestError) -> ReleaseOutcome
    /// Enrols a new factor of `kind` for the user (TOTP: a new secret, answered once and
    /// kept sealed), unconfirmed until `confirmFactor`. Through the input topic.
    func enrollFactor(user: String, kind: Factor.Kind, timeout: Double) async throws(PipelineRequestError) -> FactorEnrolment
    /// Enrols an email address or phone number (`kind` email or sms), unconfirmed, and sends
    /// it the code that confirms it (`confirmFactor`). Through the input topic.
    func enrollCodeFactor(user: String, kind: Factor.Kind, address: String, timeout: Double) async throws(PipelineRequestError) -> CodeSent
    /// Sends a code for a challenge to the user's confirmed email or SMS factor.
    func sendCode(challengeId: String, user: String, method: MFAMethod, timeout: Double) async throws(PipelineRequestError) -> CodeSent
    /// Confirms the user's factor of `kind` with a first code. Through the input topic.
    func confirmFactor(user: String, kind: Factor.Kind, code: String, timeout: Double) async throws(PipelineRequestError) -> FactorConfirmation
    /// Checks the user's code for a challenge (Factors.swift's rules); a right code clears
    /// it exactly as a verified result does. Through the input topic.
    func verifyChallenge(challengeId: String, user: String, method: MFAMethod, code: String, timeout: Double)
        async throws(PipelineRequestError) -> ChallengeVerification
    /// A face provider's verdict (`POST /v1/face/verdicts`): the raw body and its
    /// `Camfa-Signature`, checked against `factors.face.secretFile` (FaceVerdict.swift).
    func submitFaceVerdict(body: [UInt8], signature: String?, timeout: Double) async throws(PipelineRequestError) -> FaceVerdictOutcome
    /// Forgets every device the user trusted; answers how many. Through the input topic.
    func revokeDevices(user: String, timeout: Double) async throws(PipelineRequestError) -> Int
    /// Re-reads the configured policy directory and swaps the policy set atomically; an
    /// invalid set is refused and the running one stays.
    func reloadPolicies() async throws(PipelineRequestError) -> ReloadReport
    /// Readiness and its reason, for /readyz, systemd and logs.
    var health: PipelineHealth { get }
}

/// Why a request to the daemon got no regular answer. The HTTP layer maps codes to status
/// codes; `message` never carries personal data unless it is the caller's own input.
public struct PipelineRequestError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The body is not a valid event or result; `field` names the offending field.
        case invalid
        /// The flow named in the request does not exist or is not an `http` flow.
        case unknownFlow = "unknown-flow"
        /// The user's partition is assigned to another instance of the group.
        case notOwned = "not-owned"
        /// Not started, stopping, or the partition is not restored (yet).
        case unavailable
        /// No answer in time; the client applies its fail mode.
        case timeout
        /// An MFA result names a challenge the user does not have pending.
        case unknownChallenge = "unknown-challenge"
        /// An MFA result arrived after its challenge expired.
        case expiredChallenge = "expired-challenge"
        /// An MFA result names a method its challenge did not offer.
        case methodNotOffered = "method-not-offered"
        /// A valid event dated outside the time bounds: more than engine.maxFutureSkew ahead
        /// of camfa's clock, or more than engine.allowedLateness behind the partition's
        /// watermark. The request is well-formed; the time it names conflicts with the state.
        case outOfTime = "out-of-time"
        /// The new policy set does not load; `message` has every file:line:col error.
        case reloadFailed = "reload-failed"
        /// Verification (Factors.swift): the user has no confirmed factor for the method.
        case noFactor = "no-factor"
        case wrongCode = "wrong-code"
        case replayedCode = "replayed-code"
        /// The challenge took all the codes it takes; the user stays locked.
        case tooManyAttempts = "too-many-attempts"
        /// Too many refused codes in a row: no code is checked until `retryAt`.
        case lockedOut = "locked-out"
        /// Email and SMS: no code was sent for the challenge or confirmation.
        case noCode = "no-code"
        /// Email and SMS: the code sent expired.
        case expiredCode = "expired-code"
        /// Email and SMS: the challenge took `factors.sendsPerChallenge` codes.
        case tooManySends = "too-many-sends"
        /// This camfa sends no codes of the kind (factors.email, factors.sms unset).
        case notConfigured = "not-configured"
        /// The code was stored but its provider (SMTP server, webhook) did not take it.
        case deliveryFailed = "delivery-failed"
        /// A provider's callback without a valid, recent `Camfa-Signature`.
        case badSignature = "bad-signature"
    }

    public var code: Code
    public var message: String
    public var field: String?
    /// Epoch ms when a lockout ends (`locked-out`, and the failure that started it).
    public var retryAt: Int64?
    /// `not-owned` refused before anything was written: the `http.advertisedURL` of the
    /// instance that processes the user, when the owners topic names one. The HTTP layer
    /// forwards the request there (README "Any instance answers").
    public var owner: String?

    public init(code: Code, message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// The answer of API mode.
public struct Evaluation: Sendable {
    /// Where the event was stored in the input topic (challenge ids derive from it).
    public var coordinates: MFAEvent.Coordinates
    /// The event as the engine saw it, after enrichment.
    public var event: UEBAEvent
    /// One per flow that ran, in flow order.
    public var decisions: [Decision]

    public init(coordinates: MFAEvent.Coordinates, event: UEBAEvent, decisions: [Decision]) {
        self.coordinates = coordinates
        self.event = event
        self.decisions = decisions
    }
}

/// What a release did.
public struct ReleaseOutcome: Sendable {
    public var user: String
    /// Challenges dropped (pending and expired).
    public var released: Int
    public init(user: String, released: Int) {
        self.user = user
        self.released = released
    }
}

/// A user's MFA state, as the status endpoint reports it.
public struct MFAStatus: Sendable {
    public var user: String
    /// Unexpired challenges, oldest first; the user is locked while this is not empty.
    public var pending: [PendingChallenge]
    /// Challenges that expired unanswered: expiry is not a release, so each keeps the user
    /// locked until a verified result for a later challenge or an admin release.
    public var expired: [PendingChallenge] = []
    /// Event time (epoch ms) of the last verified MFA result.
    public var lastVerified: Int64?
    /// What a client does when camfa does not answer in time: the strictest fail mode of
    /// the flows with a pending challenge, else the default (open, the seed's rule).
    public var failMode: FailMode

    public var mfaVerified: Bool { pending.isEmpty && expired.isEmpty }

    public init(user: String, pending: [PendingChallenge], lastVerified: Int64?, failMode: FailMode) {
        self.user = user
        self.pending = pending
        self.lastVerified = lastVerified
        self.failMode = failMode
    }
}

/// An MFA outcome reported by a subscriber.
public struct MFAResult: Sendable, Equatable {
    public enum Outcome: String, Sendable, CaseIterable {
        case verified, failed
    }

    /// The MFA event id (the challenge id) the result answers.
    public var challengeId: String
    public var user: String
    public var method: MFAMethod
    public var outcome: Outcome
    /// Epoch milliseconds.
    public var time: Int64

    public init(challengeId: String, user: String, method: MFAMethod, outcome: Outcome, time: Int64) {
        self.challengeId = challengeId
        self.user = user
        self.method = method
        self.outcome = outcome
        self.time = time
    }
}

public struct MFAResultOutcome: Sendable {
    public var result: MFAResult
    /// True when the result cleared a pending challenge (verified).
    public var cleared: Bool
    /// Where the result was stored in the input topic.
    public var coordinates: MFAEvent.Coordinates

    public init(result: MFAResult, cleared: Bool, coordinates: MFAEvent.Coordinates) {
        self.result = result
        self.cleared = cleared
        self.coordinates = coordinates
    }
}

public struct ReloadReport: Sendable, Equatable {
    public var policies: Int
    public var flows: Int

    public init(policies: Int, flows: Int) {
        self.policies = policies
        self.flows = flows
    }
}
