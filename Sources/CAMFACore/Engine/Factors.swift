/// Factors camfa checks itself (issue 25): a user enrols one, confirms it with a first
/// code, and answers challenges with it (`POST /v1/challenges/{id}/verify`). Pure like the
/// rest of the engine: the daemon seals the secrets and checks the codes (`FactorCheck`),
/// the engine keeps the factors with the user's state and applies the rules below, with
/// the request's own time (stamped by camfa when it was received) as the only clock.
///
/// Every request is refused `late` when its time is more than `allowedLateness` behind the
/// partition's watermark, so a copy of an old request (camfa's MAC holds for it) cannot be
/// put back into the topic to replay it.
///
/// Rules for enrolment: a new factor starts unconfirmed and replaces only an unconfirmed one
/// of its kind; the confirmed factor answers challenges until the new one is confirmed, so
/// an enrolment (or its replay) never takes a working factor away. An enrolment no later
/// than the user's factor of its kind is refused `outdated`. Confirmation counts refused
/// codes and respects the lockout like a verification; a confirmed factor is not confirmed
/// again.
///
/// Rules for a verification:
/// - while the user is locked out (`lockedOutUntil` after the request's time) every code
///   is refused `locked-out`, unchecked;
/// - the challenge must be the user's, pending, unexpired, and offer the method, exactly
///   as for an MFA result (MFAResults.swift);
/// - a challenge takes at most `attemptsPerChallenge` codes (`too-many-attempts` after);
/// - the user needs a confirmed factor for the method (`no-factor`);
/// - a wrong or replayed code counts against the challenge and the user; at
///   `failuresPerUser` consecutive failures the user is locked out for `lockout`, and every
///   further failure after a lockout locks again;
/// - an accepted code clears the challenge as a verified result does and resets the
///   user's failures.
/// A factor's secret never leaves the daemon's seal: the engine stores bytes.
///
/// Code factors (email, sms): the factor holds the sealed address or number, and the one
/// code camfa sent last (`SentCode`): at enrolment, for the confirmation; by `issueCode`,
/// for one challenge. A code answers only what it was sent for, until `codeLifetime`, once;
/// a newer code replaces it. A challenge takes at most `sendsPerChallenge` codes, and none
/// while the user is locked out or the challenge has used up its attempts.
///
/// Trusted devices: a verification may carry the hash of a device token the daemon drew.
/// When the challenge's flow sets `rememberDevice`, the challenged event's device (its
/// fingerprint) is trusted for that long: events that present the token
/// (`custom.deviceToken`) from that device see `user.device.trusted`. Confirming a new
/// factor forgets every device, as does a revocation.
public struct Factor: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case totp, email, sms
        /// A face provider's check: camfa sends it a one-time code by webhook, and the
        /// provider's signed verdict for that code answers like a code the user typed.
        case face

        /// The challenge method a factor of this kind answers.
        public var method: MFAMethod {
            switch self {
            case .totp: .otp
            case .email: .email
            case .sms: .sms
            case .face: .face
            }
        }

        public init?(method: MFAMethod) {
            guard let k = Kind.allCases.first(where: { $0.method == method }) else { return nil }
            self = k
        }
    }

    public var kind: Kind
    /// Sealed by the daemon (TOTP: the shared secret). Opaque here.
    public var sealed: [UInt8]
    /// False from enrolment until a first code proves the user holds the factor.
    public var confirmed: Bool
    /// Epoch ms of the enrolment.
    public var enrolledAt: Int64
    /// TOTP: the step of the last accepted code; each step is accepted once (RFC 6238 5.2).
    public var lastUsedStep: Int64?
    /// Email and SMS: the code sent last, until it is used or replaced.
    public var code: SentCode?

    public init(kind: Kind, sealed: [UInt8], confirmed: Bool = false, enrolledAt: Int64, lastUsedStep: Int64? = nil, code: SentCode? = nil) {
        self.kind = kind
        self.sealed = sealed
        self.confirmed = confirmed
        self.enrolledAt = enrolledAt
        self.lastUsedStep = lastUsedStep
        self.code = code
    }
}

extension Factor.Kind {
    /// Whether camfa sends this kind's codes (email, sms, and face to its provider) rather
    /// than the user's app computing them (totp).
    public var sendsCodes: Bool { self != .totp }
}

/// A one-time code camfa sent to a code factor (Factors.swift).
public struct SentCode: Sendable, Equatable {
    /// The code, sealed by the daemon.
    public var sealed: [UInt8]
    /// The challenge it answers; nil: the factor's confirmation.
    public var challengeId: String?
    /// Epoch ms.
    public var expiresAt: Int64
    /// Codes sent for this challenge so far, this one included.
    public var sends: Int

    public init(sealed: [UInt8], challengeId: String?, expiresAt: Int64, sends: Int = 1) {
        self.sealed = sealed
        self.challengeId = challengeId
        self.expiresAt = expiresAt
        self.sends = sends
    }
}

/// A device a user verified a challenge from (Factors.swift).
public struct TrustedDevice: Sendable, Equatable {
    /// SHA-256 of the device token (the token itself is only ever in the caller's hands).
    public var tokenHash: [UInt8]
    /// `Engine.deviceFingerprint` of the challenged event.
    public var fingerprint: String
    /// Epoch ms.
    public var expiresAt: Int64

    public init(tokenHash: [UInt8], fingerprint: String, expiresAt: Int64) {
        self.tokenHash = tokenHash
        self.fingerprint = fingerprint
        self.expiresAt = expiresAt
    }

    /// The most a user keeps; the oldest goes first.
    public static let perUser = 20
}

/// Per user: the codes refused since the last accepted one, per challenge and in all.
public struct VerificationCounters: Sendable, Equatable {
    /// Consecutive refused codes (`user.mfa.failures` for policies).
    public var failures: Int = 0
    /// Epoch ms until which every code is refused unchecked.
    public var lockedOutUntil: Int64?
    /// Refused codes per pending challenge id.
    public var attempts: [String: Int] = [:]

    public init(failures: Int = 0, lockedOutUntil: Int64? = nil, attempts: [String: Int] = [:]) {
        self.failures = failures
        self.lockedOutUntil = lockedOutUntil
        self.attempts = attempts
    }
}

/// The configurable limits of the rules above (`mfa` in the configuration).
public struct VerificationLimits: Sendable, Equatable {
    public var attemptsPerChallenge: Int
    public var failuresPerUser: Int
    /// Milliseconds.
    public var lockout: Int64
    /// Milliseconds a sent code answers.
    public var codeLifetime: Int64
    /// Codes camfa sends for one challenge.
    public var sendsPerChallenge: Int

    public init(attemptsPerChallenge: Int = 5, failuresPerUser: Int = 10, lockout: Int64 = 15 * 60_000,
                codeLifetime: Int64 = 5 * 60_000, sendsPerChallenge: Int = 3) {
        self.attemptsPerChallenge = attemptsPerChallenge
        self.failuresPerUser = failuresPerUser
        self.lockout = lockout
        self.codeLifetime = codeLifetime
        self.sendsPerChallenge = sendsPerChallenge
    }
}

/// What the daemon's check of a code against a factor found.
public enum FactorCheck: Sendable, Equatable {
    /// `step`: TOTP's matched step, remembered so the code cannot be used again.
    case accepted(step: Int64?)
    case wrongCode
    /// A code of a step already used.
    case replayed
}

public struct VerificationRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        case unknownChallenge = "unknown-challenge"
        case expiredChallenge = "expired-challenge"
        case methodNotOffered = "method-not-offered"
        case noFactor = "no-factor"
        case wrongCode = "wrong-code"
        case replayedCode = "replayed-code"
        case tooManyAttempts = "too-many-attempts"
        case lockedOut = "locked-out"
        /// More than `allowedLateness` behind the partition's watermark: a copy of an old
        /// request put back into the topic, or one delayed past use.
        case late
        /// An enrolment no later than the factor it would replace (a replayed copy).
        case outdated
        /// Code factors: no code was sent for this challenge (or confirmation).
        case noCode = "no-code"
        /// Code factors: the code sent for it expired; a new one can be sent.
        case expiredCode = "expired-code"
        /// Code factors: the challenge took `sendsPerChallenge` codes.
        case tooManySends = "too-many-sends"
        /// A code cannot be sent for this method (totp, face).
        case notSendable = "not-sendable"
    }

    public var code: Code
    public var message: String
    /// Codes the challenge still takes (wrong or replayed codes).
    public var attemptsLeft: Int?
    /// Epoch ms when a lockout ends.
    public var retryAt: Int64?

    public init(code: Code, message: String, attemptsLeft: Int? = nil, retryAt: Int64? = nil) {
        self.code = code
        self.message = message
        self.attemptsLeft = attemptsLeft
        self.retryAt = retryAt
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// A verification that cleared its challenge.
public struct ChallengeVerified: Sendable, Equatable {
    public var challenge: PendingChallenge
    /// The challenge and the expired ones the user still held (each a `cleared` event).
    public var dropped: [PendingChallenge]
    /// Until when the device token is trusted; nil when the flow remembers no device.
    public var deviceTrustedUntil: Int64?
}

extension Engine {
    /// Enrols `factor` for `user`; see the rules above. (A factor given confirmed, as tests
    /// and migrations may, replaces every factor of its kind.)
    @discardableResult
    public func enrollFactor(_ factor: Factor, user: String, state: inout PartitionState) -> Result<Void, VerificationRejection> {
        if let late = late(factor.enrolledAt, state) { return .failure(late) }
        let existing = state.users[user]
        if let newest = existing?.factors.filter({ $0.kind == factor.kind }).map(\.enrolledAt).max(), factor.enrolledAt <= newest {
            return .failure(VerificationRejection(code: .outdated, message: "the user's \(factor.kind.rawValue) factor was enrolled at \(newest), this enrolment is dated \(factor.enrolledAt)"))
        }
        if existing == nil { makeRoom(space: state.keyspaces.count, cap: policySet.options.maxUsers, in: &state) }
        var u = existing ?? UserState(lastSeen: factor.enrolledAt)
        u.factors.removeAll { $0.kind == factor.kind && (factor.confirmed || !$0.confirmed) }
        u.factors.append(factor)
        u.factors.sort { ($0.kind.rawValue, $0.enrolledAt) < ($1.kind.rawValue, $1.enrolledAt) }
        state.users[user] = u
        state.pinChanged(from: existing?.isPinned ?? false, to: true)
        state.recordChange(user: user)
        return .success(())
    }

    /// Confirms the user's new factor of `kind` with a first code; see the rules above.
    public func confirmFactor(
        kind: Factor.Kind, user: String, time: Int64, limits: VerificationLimits, state: inout PartitionState,
        check: (Factor) -> FactorCheck
    ) -> Result<Factor, VerificationRejection> {
        if let late = late(time, state) { return .failure(late) }
        guard var u = state.users[user], let i = u.factors.firstIndex(where: { $0.kind == kind && !$0.confirmed }) else {
            return .failure(VerificationRejection(code: .noFactor, message: "the user has no unconfirmed \(kind.rawValue) factor to confirm"))
        }
        if let locked = lockedOut(u, time) { return .failure(locked) }
        if let unusable = Self.unusableCode(u.factors[i], for: nil, time: time) { return .failure(unusable) }
        let outcome = check(u.factors[i])
        guard case .accepted(let step) = outcome else {
            var rejection = outcome == .replayed
                ? VerificationRejection(code: .replayedCode, message: "this code was used already")
                : VerificationRejection(code: .wrongCode, message: "the code does not match the factor")
            countFailure(&u, &rejection, time: time, limits: limits)
            state.users[user] = u
            state.recordChange(user: user)
            return .failure(rejection)
        }
        var factor = u.factors[i]
        factor.confirmed = true
        factor.code = nil
        if let step { factor.lastUsedStep = step }
        u.factors.removeAll { $0.kind == kind }
        u.factors.append(factor)
        u.factors.sort { $0.kind.rawValue < $1.kind.rawValue }
        u.devices = []
        u.verification = VerificationCounters()
        state.users[user] = u
        state.recordChange(user: user)
        return .success(factor)
    }

    /// Why a code factor's sent code cannot answer `challengeId` (nil: the confirmation) at
    /// `time`; nil when it can, or for TOTP. Not a failure: nothing was guessed.
    static func unusableCode(_ factor: Factor, for challengeId: String?, time: Int64) -> VerificationRejection? {
        guard factor.kind.sendsCodes else { return nil }
        guard let sent = factor.code, sent.challengeId == challengeId else {
            return VerificationRejection(code: .noCode, message: challengeId == nil
                ? "no code was sent to confirm this factor; enrol it again to send one"
                : "no \(factor.kind.rawValue) code was sent for this challenge; send one first")
        }
        guard sent.expiresAt > time else {
            return VerificationRejection(code: .expiredCode, message: "the code sent expired at \(sent.expiresAt); send a new one")
        }
        return nil
    }

    /// `heldChallenge` (MFAResults.swift) with its refusal as a verification's.
    private func heldForCode(_ id: String, user: String, method: MFAMethod, time: Int64, state: PartitionState)
        -> Result<PendingChallenge, VerificationRejection>
    {
        heldChallenge(id, user: user, method: method, time: time, state: state).mapError { r in
            let code: VerificationRejection.Code = switch r.code {
            case .unknownChallenge: .unknownChallenge
            case .expiredChallenge: .expiredChallenge
            case .methodNotOffered: .methodNotOffered
            }
            return VerificationRejection(code: code, message: r.message)
        }
    }

    private func late(_ time: Int64, _ state: PartitionState) -> VerificationRejection? {
        lateness(of: time, watermark: state.watermark).map { VerificationRejection(code: .late, message: $0.message) }
    }

    private func lockedOut(_ u: UserState, _ time: Int64) -> VerificationRejection? {
        guard let until = u.verification.lockedOutUntil, until > time else { return nil }
        return VerificationRejection(code: .lockedOut, message: "too many wrong codes: the user is locked out of verification until \(until)",
                                     retryAt: until)
    }

    /// One more refused code; at the limit, a lockout.
    private func countFailure(_ u: inout UserState, _ rejection: inout VerificationRejection, time: Int64, limits: VerificationLimits) {
        u.verification.failures += 1
        guard u.verification.failures >= limits.failuresPerUser else { return }
        let until = Self.later(time, by: limits.lockout)
        u.verification.lockedOutUntil = until
        rejection.message += "; \(u.verification.failures) wrong codes in a row lock the user out until \(until)"
        rejection.retryAt = until
    }

    /// Checks a code for a challenge; see the rules above.
    /// `deviceTokenHash`: SHA-256 of a device token, remembered if the flow says so.
    public func verifyChallenge(
        challengeId: String, user: String, method: MFAMethod, time: Int64, limits: VerificationLimits,
        deviceTokenHash: [UInt8]? = nil, state: inout PartitionState, check: (Factor) -> FactorCheck
    ) -> Result<ChallengeVerified, VerificationRejection> {
        if let late = late(time, state) { return .failure(late) }
        let challenge: PendingChallenge
        switch heldForCode(challengeId, user: user, method: method, time: time, state: state) {
        case .success(let c): challenge = c
        case .failure(let r): return .failure(r)
        }
        var u = state.users[user]!
        if let locked = lockedOut(u, time) { return .failure(locked) }
        let used = u.verification.attempts[challengeId] ?? 0
        guard used < limits.attemptsPerChallenge else {
            return .failure(VerificationRejection(
                code: .tooManyAttempts, message: "the challenge took \(limits.attemptsPerChallenge) wrong codes; a new sign-in issues a new one",
                attemptsLeft: 0))
        }
        guard let kind = Factor.Kind(method: method), let f = u.factors.firstIndex(where: { $0.kind == kind && $0.confirmed }) else {
            return .failure(VerificationRejection(code: .noFactor, message: "the user has no confirmed factor for \(method.rawValue)"))
        }
        if let unusable = Self.unusableCode(u.factors[f], for: challengeId, time: time) { return .failure(unusable) }
        let outcome = check(u.factors[f])
        guard case .accepted(let step) = outcome else {
            u.verification.attempts = u.verification.attempts.filter { id, _ in u.pending.contains { $0.id == id } }
            u.verification.attempts[challengeId] = used + 1
            let left = limits.attemptsPerChallenge - used - 1
            var rejection = outcome == .replayed
                ? VerificationRejection(code: .replayedCode, message: "this code was used already", attemptsLeft: left)
                : VerificationRejection(code: .wrongCode, message: "the code does not match the factor", attemptsLeft: left)
            countFailure(&u, &rejection, time: time, limits: limits)
            state.users[user] = u
            state.recordChange(user: user)
            return .failure(rejection)
        }
        if let step { u.factors[f].lastUsedStep = step }
        u.factors[f].code = nil
        u.verification = VerificationCounters()
        var trustedUntil: Int64?
        if let hash = deviceTokenHash, let fingerprint = challenge.device,
           let remember = policySet.flows.first(where: { $0.name == challenge.flow })?.rememberDevice {
            let until = Self.later(time, by: remember)
            u.devices.removeAll { $0.expiresAt <= time }
            u.devices.append(TrustedDevice(tokenHash: hash, fingerprint: fingerprint, expiresAt: until))
            if u.devices.count > TrustedDevice.perUser { u.devices.removeFirst(u.devices.count - TrustedDevice.perUser) }
            trustedUntil = until
        }
        state.users[user] = u
        state.recordChange(user: user)
        switch applyMFAResult(challengeId: challengeId, user: user, method: method, verified: true, time: time, state: &state) {
        case .success(let applied):
            return .success(ChallengeVerified(challenge: challenge, dropped: applied.dropped, deviceTrustedUntil: trustedUntil))
        case .failure(let r):
            // Unreachable: the same checks passed above.
            return .failure(VerificationRejection(code: .unknownChallenge, message: r.message))
        }
    }
}

extension Engine {
    /// Keeps `code` (sealed by the daemon) as the one that answers `challengeId` with the
    /// user's confirmed factor for `method`, and answers that factor, whose sealed address
    /// or number the daemon sends it to; see the rules above.
    public func issueCode(
        _ code: [UInt8], challengeId: String, user: String, method: MFAMethod, time: Int64, limits: VerificationLimits,
        state: inout PartitionState
    ) -> Result<Factor, VerificationRejection> {
        if let late = late(time, state) { return .failure(late) }
        guard let kind = Factor.Kind(method: method), kind.sendsCodes else {
            return .failure(VerificationRejection(code: .notSendable, message: "camfa sends codes for email and sms only, not \(method.rawValue)"))
        }
        if case .failure(let r) = heldForCode(challengeId, user: user, method: method, time: time, state: state) { return .failure(r) }
        var u = state.users[user]!
        if let locked = lockedOut(u, time) { return .failure(locked) }
        guard (u.verification.attempts[challengeId] ?? 0) < limits.attemptsPerChallenge else {
            return .failure(VerificationRejection(code: .tooManyAttempts, message: "the challenge took \(limits.attemptsPerChallenge) wrong codes; a new sign-in issues a new one",
                                                  attemptsLeft: 0))
        }
        guard let f = u.factors.firstIndex(where: { $0.kind == kind && $0.confirmed }) else {
            return .failure(VerificationRejection(code: .noFactor, message: "the user has no confirmed factor for \(method.rawValue)"))
        }
        let previous = u.factors[f].code
        let sends = previous?.challengeId == challengeId ? (previous?.sends ?? 0) + 1 : 1
        guard sends <= limits.sendsPerChallenge else {
            return .failure(VerificationRejection(code: .tooManySends, message: "\(limits.sendsPerChallenge) codes were sent for this challenge already"))
        }
        u.factors[f].code = SentCode(sealed: code, challengeId: challengeId, expiresAt: Self.later(time, by: limits.codeLifetime), sends: sends)
        state.users[user] = u
        state.recordChange(user: user)
        return .success(u.factors[f])
    }

    /// Forgets every device the user trusted (`DELETE /v1/users/{id}/devices`); returns how many.
    public func revokeDevices(user: String, state: inout PartitionState) -> Int {
        guard var u = state.users[user], !u.devices.isEmpty else { return 0 }
        let n = u.devices.count
        u.devices = []
        state.users[user] = u
        state.recordChange(user: user)
        return n
    }

    /// What identifies the device of an event: SHA-256 (hex) of its user agent, else of its
    /// device, system and browser types; nil when the event names none of them.
    public static func deviceFingerprint(_ event: UEBAEvent) -> String? {
        let text: String
        if let ua = event.ua, !ua.isEmpty {
            text = "ua\u{0}" + ua
        } else if event.deviceType != nil || event.systemType != nil || event.browserType != nil {
            text = "types\u{0}\(event.deviceType ?? "")\u{0}\(event.systemType ?? "")\u{0}\(event.browserType ?? "")"
        } else {
            return nil
        }
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: SHA256.hash(Array(text.utf8)).flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xF)]] }, as: UTF8.self)
    }

    /// Whether `event` presents a device token the user trusts, from the device it was given to.
    static func presentsTrustedDevice(_ event: UEBAEvent, devices: [TrustedDevice]) -> Bool {
        guard !devices.isEmpty, case .string(let token)? = event.custom.value(forString: "deviceToken"),
              let fingerprint = deviceFingerprint(event) else { return false }
        let hash = SHA256.hash(Array(token.utf8))
        return devices.contains { $0.expiresAt > event.requestDate && $0.fingerprint == fingerprint && HMACSHA256.equal($0.tokenHash, hash) }
    }
}

extension PartitionState {
    /// The devices the user trusts (hashed tokens).
    public func trustedDevices(user: String) -> [TrustedDevice] { users[user]?.devices ?? [] }

    /// The user's enrolled factors (sealed), by kind.
    public func factors(user: String) -> [Factor] { users[user]?.factors ?? [] }

    /// The user's refused codes and lockout.
    public func verificationCounters(user: String) -> VerificationCounters { users[user]?.verification ?? VerificationCounters() }
}
