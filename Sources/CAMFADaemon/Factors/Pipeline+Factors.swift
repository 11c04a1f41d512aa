import CAMFACore
import CAMFAFactors
import CAMFAKafka
import Foundation

// Factor enrolment, confirmation and challenge verification (issue 25): the caller's side
// validates, seals and writes a record into the user's input partition; the user's task
// applies it (Engine.enrollFactor, confirmFactor, verifyChallenge) and answers.

// MARK: - The backend contract (caller's side: any thread)

extension Pipeline {
    public func enrollFactor(user: String, kind: Factor.Kind, timeout: Double) async throws(PipelineRequestError) -> FactorEnrolment {
        try checkUser(user)
        guard kind == .totp else {
            throw PipelineRequestError(code: .invalid, message: "only totp factors can be enrolled by this camfa", field: "factor")
        }
        guard let secret = TOTP.newSecret(), let sealed = seal.seal(secret, user: user, purpose: .secret) else {
            throw PipelineRequestError(code: .unavailable, message: "cannot draw a random secret")
        }
        let record = FactorRecord.enrolment(user: user, kind: kind, sealed: sealed, time: options.clock())
        guard case .factorEnrolled = try await submitFactor(record, timeout: timeout) else { throw Self.mismatch }
        let uri = TOTP(secret: secret).uri(issuer: options.configuration.factors.issuer, account: user)
        return FactorEnrolment(user: user, kind: kind, secret: secret, otpauthURI: uri)
    }

    public func confirmFactor(user: String, kind: Factor.Kind, code: String, timeout: Double) async throws(PipelineRequestError) -> FactorConfirmation {
        try checkUser(user)
        let sealed = try sealCode(code, user: user)
        let record = FactorRecord.confirmation(user: user, kind: kind, code: sealed, time: options.clock())
        guard case .factorConfirmed(let c) = try await submitFactor(record, timeout: timeout) else { throw Self.mismatch }
        return c
    }

    public func verifyChallenge(challengeId: String, user: String, method: MFAMethod, code: String, timeout: Double)
        async throws(PipelineRequestError) -> ChallengeVerification
    {
        try checkUser(user)
        let limits = options.configuration.engine.limits
        guard !challengeId.isEmpty, challengeId.utf8.count <= limits.maxFieldBytes else {
            throw PipelineRequestError(code: .invalid, message: "the challenge id must have 1 to \(limits.maxFieldBytes) bytes", field: "mfaEventId")
        }
        let sealed = try sealCode(code, user: user)
        // Drawn here, not in the task: replaying the record must not draw another. Only its
        // hash enters the topic.
        guard let random = TOTP.newSecret() else { throw PipelineRequestError(code: .unavailable, message: "cannot draw a device token") }
        let deviceToken = Data(random).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        let record = FactorRecord.verification(user: user, challengeId: challengeId, method: method, code: sealed,
                                               deviceTokenHash: SHA256.hash(Array(deviceToken.utf8)), time: options.clock())
        guard case .challengeVerified(var v) = try await submitFactor(record, timeout: timeout) else { throw Self.mismatch }
        if v.deviceTrustedUntil != nil { v.deviceToken = deviceToken }
        return v
    }

    public func revokeDevices(user: String, timeout: Double) async throws(PipelineRequestError) -> Int {
        try checkUser(user)
        guard case .devicesRevoked(let n) = try await submitFactor(.revocation(user: user, time: options.clock()), timeout: timeout) else {
            throw Self.mismatch
        }
        return n
    }

    private func checkUser(_ user: String) throws(PipelineRequestError) {
        let max = options.configuration.engine.limits.maxIdentityBytes
        guard !user.isEmpty, user.utf8.count <= max else {
            throw PipelineRequestError(code: .invalid, message: "the user id must have 1 to \(max) bytes", field: "user")
        }
    }

    /// Codes are digits (6 for TOTP); anything else is refused before it is written.
    private func sealCode(_ code: String, user: String) throws(PipelineRequestError) -> [UInt8] {
        guard (4...10).contains(code.utf8.count), code.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            throw PipelineRequestError(code: .invalid, message: "the code must be 4 to 10 digits", field: "code")
        }
        guard let sealed = seal.seal(Array(code.utf8), user: user, purpose: .code) else {
            throw PipelineRequestError(code: .unavailable, message: "cannot seal the code")
        }
        return sealed
    }

    private func submitFactor(_ record: FactorRecord, timeout: Double) async throws(PipelineRequestError) -> PipelineMailbox.Reply {
        let id = UUID().uuidString
        return try await mailbox.submit(.factor(id: id, record: record), id: id, timeout: timeout).get()
    }
}

// MARK: - The user's task (poll thread)

extension Pipeline {
    func handleFactor(_ kind: String, _ record: KafkaRecord, _ value: UnsafeRawBufferPointer) {
        let request: FactorRecord
        switch FactorRecord.decode(kind: kind, json: [UInt8](value)) {
        case .failure(let e):
            deadLetter(record, reason: "invalid: \(e.message)")
            return
        case .success(let r): request = r
        }
        // As for results: a request from the future would move the watermark.
        if let reason = Intake.futureReason(field: "time", time: request.time, now: options.clock(), skew: options.configuration.engine.maxFutureSkew) {
            deadLetter(record, reason: reason)
            return
        }
        let p = record.partition
        let seal = self.seal
        switch request {
        case .enrolment(let user, let kind, let sealed, let time):
            switch engine.enrollFactor(Factor(kind: kind, sealed: sealed, enrolledAt: time), user: user, state: &partitions[p]!.state) {
            case .success:
                logger.notice("factor enrolled", metadata: ["partition": "\(p)", "offset": "\(record.offset)", "factor": "\(kind.rawValue)"])
                finish(record, outputs: [], answer: .success(.factorEnrolled))
            case .failure(let r):
                // A replayed or stale copy: dead-lettered, as camfa's records are never dropped silently.
                deadLetter(record, reason: "\(r.code.rawValue): \(r.message)", code: .outOfTime)
            }
        case .confirmation(let user, let kind, let code, let time):
            let confirmed = engine.confirmFactor(kind: kind, user: user, time: time, limits: options.configuration.factors.limits,
                                                 state: &partitions[p]!.state) {
                FactorCheck.totp($0, code: code, user: user, time: time, seal: seal)
            }
            let answer: PipelineMailbox.Answer = switch confirmed {
            case .success(let f): .success(.factorConfirmed(FactorConfirmation(user: user, kind: f.kind)))
            case .failure(let r): .failure(Self.requestError(r))
            }
            finish(record, outputs: [], answer: answer)
        case .revocation(let user, _):
            let n = engine.revokeDevices(user: user, state: &partitions[p]!.state)
            logger.notice("trusted devices revoked", metadata: ["partition": "\(p)", "offset": "\(record.offset)", "devices": "\(n)"])
            finish(record, outputs: [], answer: .success(.devicesRevoked(n)))
        case .verification(let user, let challengeId, let method, let code, let deviceTokenHash, let time):
            let verified = engine.verifyChallenge(
                challengeId: challengeId, user: user, method: method, time: time, limits: options.configuration.factors.limits,
                deviceTokenHash: deviceTokenHash, state: &partitions[p]!.state) {
                FactorCheck.totp($0, code: code, user: user, time: time, seal: seal)
            }
            // Policies see every code as an MFA result (brute force, fatigue).
            let outcome: String = switch verified {
            case .success: "verified"
            case .failure(let r) where r.code == .wrongCode || r.code == .replayedCode: "failed"
            case .failure: "rejected"
            }
            let event = Engine.mfaResultEvent(challengeId: challengeId, user: user, method: method, outcome: outcome, time: time)
            let coordinates = MFAEvent.Coordinates(topic: record.topic, partition: p, offset: record.offset)
            let decisions = policyDecisions(on: event, record)
            switch verified {
            case .success(let v):
                let cleared = clearedOutputs(v.dropped, user: user, by: .verified, method: method, time: time, record)
                publish(decisions, of: event, record, extra: cleared)
                answer(record, .success(.challengeVerified(ChallengeVerification(
                    user: user, challengeId: challengeId, method: method, app: v.challenge.app, flow: v.challenge.flow,
                    acr: options.policySet.flows.first { $0.name == v.challenge.flow }?.acr, time: time,
                    coordinates: coordinates, deviceTrustedUntil: v.deviceTrustedUntil))))
            case .failure(let r):
                publish(decisions, of: event, record)
                answer(record, .failure(Self.requestError(r)))
            }
        }
    }

    /// Marks a request's record processed (after its outputs) and answers its caller.
    private func finish(_ record: KafkaRecord, outputs: [Output], answer a: PipelineMailbox.Answer) {
        for o in outputs { produce(o) }
        metrics.processed += 1
        markProcessed(record, outputs: outputs.count)
        answer(record, a)
    }

    private func answer(_ record: KafkaRecord, _ a: PipelineMailbox.Answer) {
        if let request = record.header(InputHeaders.request) { answer(request, a) }
    }

    static func requestError(_ r: VerificationRejection) -> PipelineRequestError {
        let code: PipelineRequestError.Code = switch r.code {
        case .unknownChallenge: .unknownChallenge
        case .expiredChallenge: .expiredChallenge
        case .methodNotOffered: .methodNotOffered
        case .noFactor: .noFactor
        case .wrongCode: .wrongCode
        case .replayedCode: .replayedCode
        case .tooManyAttempts: .tooManyAttempts
        case .lockedOut: .lockedOut
        case .late, .outdated: .outOfTime
        }
        var message = r.message
        if let left = r.attemptsLeft, left > 0 { message += " (\(left) more code\(left == 1 ? "" : "s") for this challenge)" }
        var e = PipelineRequestError(code: code, message: message)
        e.retryAt = r.retryAt
        return e
    }
}
