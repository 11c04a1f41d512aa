import CAMFACore
import CAMFADelivery
import CAMFAFactors
import CAMFAKafka
import Foundation
import Metrics

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
        let record = FactorRecord.enrolment(user: user, kind: kind, sealed: sealed, code: nil, time: options.clock())
        guard case .factorEnrolled = try await submitFactor(record, timeout: timeout) else { throw Self.mismatch }
        let uri = TOTP(secret: secret).uri(issuer: options.configuration.factors.issuer, account: user)
        return FactorEnrolment(user: user, kind: kind, secret: secret, otpauthURI: uri)
    }

    public func enrollCodeFactor(user: String, kind: Factor.Kind, address: String, timeout: Double) async throws(PipelineRequestError) -> CodeSent {
        try checkUser(user)
        let channel = try codeChannel(kind)
        try CodeAddress.check(address, kind: kind)
        let (code, sealedCode) = try drawCode(user: user, kind: kind)
        guard let sealed = seal.seal(Array(address.utf8), user: user, purpose: .address) else {
            throw PipelineRequestError(code: .unavailable, message: "cannot seal the address")
        }
        let time = options.clock()
        let record = FactorRecord.enrolment(user: user, kind: kind, sealed: sealed, code: sealedCode, time: time)
        guard case .factorEnrolled = try await submitFactor(record, timeout: timeout) else { throw Self.mismatch }
        let expiresAt = Engine.later(time, by: options.configuration.factors.codeLifetime)
        try await deliver(CodeMessage(channel: channel, to: address, code: code, user: user, purpose: .confirmation, mfaEventId: nil, expiresAt: expiresAt))
        return CodeSent(user: user, kind: kind, challengeId: nil, expiresAt: expiresAt, maskedAddress: CodeAddress.masked(address, kind: kind))
    }

    public func sendCode(challengeId: String, user: String, method: MFAMethod, timeout: Double) async throws(PipelineRequestError) -> CodeSent {
        try checkUser(user)
        try checkChallengeId(challengeId)
        guard let kind = Factor.Kind(method: method), kind.sendsCodes else {
            throw PipelineRequestError(code: .invalid, message: "camfa sends codes for email, sms and face, not \(method.rawValue)", field: "method")
        }
        let channel = try codeChannel(kind)
        let (code, sealedCode) = try drawCode(user: user, kind: kind)
        let record = FactorRecord.codeIssue(user: user, challengeId: challengeId, method: method, code: sealedCode, time: options.clock())
        guard case .codeIssued(let sealedAddress, let expiresAt) = try await submitFactor(record, timeout: timeout) else { throw Self.mismatch }
        guard let bytes = seal.open(sealedAddress, user: user, purpose: .address) else {
            throw PipelineRequestError(code: .unavailable, message: "the factor's address does not open with this daemon's secret")
        }
        let address = String(decoding: bytes, as: UTF8.self)
        try await deliver(CodeMessage(channel: channel, to: address, code: code, user: user, purpose: .challenge, mfaEventId: challengeId, expiresAt: expiresAt))
        return CodeSent(user: user, kind: kind, challengeId: challengeId, expiresAt: expiresAt, maskedAddress: CodeAddress.masked(address, kind: kind))
    }

    private func codeChannel(_ kind: Factor.Kind) throws(PipelineRequestError) -> CodeMessage.Channel {
        let channel: CodeMessage.Channel = kind == .sms ? .sms : kind == .face ? .face : .email
        guard kind.sendsCodes, options.codeSender?.sends(channel) == true else {
            throw PipelineRequestError(code: .notConfigured, message: "this camfa sends no \(kind.rawValue) codes: factors.\(kind.rawValue) is not configured")
        }
        return channel
    }

    /// The code in clear (for its provider) and sealed (for the topic). A face provider's
    /// code never meets a person, so it is as long as `sealCode` takes.
    private func drawCode(user: String, kind: Factor.Kind) throws(PipelineRequestError) -> (String, [UInt8]) {
        guard let code = TOTP.newCode(digits: kind == .face ? 10 : 6), let sealed = seal.seal(Array(code.utf8), user: user, purpose: .code) else {
            throw PipelineRequestError(code: .unavailable, message: "cannot draw a code")
        }
        return (code, sealed)
    }

    /// After the task stored the code: a failure leaves it stored, and a new send replaces it.
    private func deliver(_ message: CodeMessage) async throws(PipelineRequestError) {
        guard let sender = options.codeSender else { throw PipelineRequestError(code: .invalid, message: "no code sender") }
        do throws(DeliveryError) {
            try await sender.send(message)
            Counter(label: "camfa_codes_sent_total", dimensions: [("channel", message.channel.rawValue)]).increment()
            logger.notice("code sent", metadata: ["channel": "\(message.channel.rawValue)", "purpose": "\(message.purpose.rawValue)"])
        } catch {
            Counter(label: "camfa_code_deliveries_failed_total", dimensions: [("channel", message.channel.rawValue)]).increment()
            logger.warning("code not delivered", metadata: ["channel": "\(message.channel.rawValue)", "reason": "\(error.code.rawValue)", "detail": "\(error.message)"])
            throw PipelineRequestError(code: .deliveryFailed, message: "the \(message.channel.rawValue) provider did not take the code: \(error.message)")
        }
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
        try checkChallengeId(challengeId)
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

    public func submitFaceVerdict(body: [UInt8], signature: String?, timeout: Double) async throws(PipelineRequestError) -> FaceVerdictOutcome {
        // An unsigned request is refused first, whatever this camfa's configuration.
        guard let signature else { throw PipelineRequestError(code: .badSignature, message: "Camfa-Signature is missing") }
        guard let face = options.codeSender?.face else {
            throw PipelineRequestError(code: .notConfigured, message: "this camfa has no face provider: factors.face is not configured")
        }
        // Checked before the body is read: an unsigned caller learns nothing from it.
        let now = options.clock() / 1000
        guard CodeSender.signatureIsValid(signature, body: Data(body), secret: face.secret, now: now) else {
            throw PipelineRequestError(code: .badSignature, message: "Camfa-Signature is missing, wrong or more than 5 minutes off camfa's clock")
        }
        guard !verdictReplays.contains(signature, now: now) else {
            throw PipelineRequestError(code: .badSignature, message: "this signed verdict was processed already (a replay)")
        }
        let verdict = try FaceVerdict(json: body)
        do throws(PipelineRequestError) {
            let outcome: FaceVerdictOutcome
            if let id = verdict.mfaEventId {
                var v = try await verifyChallenge(challengeId: id, user: verdict.user, method: .face, code: verdict.codeToCheck, timeout: timeout)
                // The provider is not the user's device: a trusted-device token is not its to hold.
                v.deviceToken = nil
                v.deviceTrustedUntil = nil
                outcome = .verified(v)
            } else {
                outcome = .confirmed(try await confirmFactor(user: verdict.user, kind: .face, code: verdict.codeToCheck, timeout: timeout))
            }
            verdictReplays.remember(signature, until: now + 2 * 300, now: now)
            return outcome
        } catch {
            // Processed and refused (a mismatch, a used code …): a replay must not count again.
            // Not processed here (another instance, not ready, no answer in time): a retry may.
            if ![.notOwned, .unavailable, .timeout].contains(error.code) { verdictReplays.remember(signature, until: now + 2 * 300, now: now) }
            throw error
        }
    }

    public func revokeDevices(user: String, timeout: Double) async throws(PipelineRequestError) -> Int {
        try checkUser(user)
        guard case .devicesRevoked(let n) = try await submitFactor(.revocation(user: user, time: options.clock()), timeout: timeout) else {
            throw Self.mismatch
        }
        return n
    }

    private func checkChallengeId(_ challengeId: String) throws(PipelineRequestError) {
        let max = options.configuration.engine.limits.maxFieldBytes
        guard !challengeId.isEmpty, challengeId.utf8.count <= max else {
            throw PipelineRequestError(code: .invalid, message: "the challenge id must have 1 to \(max) bytes", field: "mfaEventId")
        }
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
        case .enrolment(let user, let kind, let sealed, let code, let time):
            let sent = code.map { SentCode(sealed: $0, challengeId: nil, expiresAt: Engine.later(time, by: options.configuration.factors.codeLifetime)) }
            switch engine.enrollFactor(Factor(kind: kind, sealed: sealed, enrolledAt: time, code: sent), user: user, state: &partitions[p]!.state) {
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
                FactorCheck.of($0, code: code, user: user, time: time, seal: seal)
            }
            let answer: PipelineMailbox.Answer = switch confirmed {
            case .success(let f): .success(.factorConfirmed(FactorConfirmation(user: user, kind: f.kind)))
            case .failure(let r): .failure(Self.requestError(r))
            }
            finish(record, outputs: [], answer: answer)
        case .codeIssue(let user, let challengeId, let method, let code, let time):
            let issued = engine.issueCode(code, challengeId: challengeId, user: user, method: method, time: time,
                                          limits: options.configuration.factors.limits, state: &partitions[p]!.state)
            let answer: PipelineMailbox.Answer = switch issued {
            case .success(let f): .success(.codeIssued(sealedAddress: f.sealed, expiresAt: f.code?.expiresAt ?? time))
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
                FactorCheck.of($0, code: code, user: user, time: time, seal: seal)
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
        case .noCode: .noCode
        case .expiredCode: .expiredCode
        case .tooManySends: .tooManySends
        case .notSendable: .invalid
        }
        var message = r.message
        if let left = r.attemptsLeft, left > 0 { message += " (\(left) more code\(left == 1 ? "" : "s") for this challenge)" }
        var e = PipelineRequestError(code: code, message: message)
        e.retryAt = r.retryAt
        return e
    }
}
