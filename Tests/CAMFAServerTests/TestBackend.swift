@testable import CAMFACore
@testable import CAMFADaemon
import CAMFADelivery
import Foundation

/// A `CAMFABackend` with fixed answers built from CAMFACore types. Failures are chosen by
/// the request itself, so tests sharing nothing can run in parallel:
/// - evaluate: `?flow=fail-<code>` throws that code; a body that is not a UEBA event
///   throws `invalid` with the decoder's field.
/// - mfaStatus: user `fail-<code>` throws that code; user `locked` has a pending challenge.
/// - submitMFAResult: mfaEventId `unknown…` → unknown-challenge, `expired…` → expired-challenge;
///   a missing field → invalid naming it.
/// - reloadPolicies: throws reload-failed when `reloadFails`.
/// - factors: user `fail-<code>` throws that code; code 000000 is wrong; a verification
///   for user `lockedout` is refused locked-out for 90 s.
final class TestBackend: CAMFABackend, @unchecked Sendable {
    let health = PipelineHealth()
    let reloadFails: Bool
    static let coordinates = MFAEvent.Coordinates(topic: "camfa.ueba", partition: 3, offset: 42)
    static let expiresAt: Int64 = 1_767_225_900_000
    static let challengeId = "c-3-42-login"

    init(ready: Bool = true, reloadFails: Bool = false) {
        self.reloadFails = reloadFails
        if ready {
            health.setStarted(true)
            health.assignmentHandled()
        }
    }

    static func failure(_ name: String?) -> PipelineRequestError? {
        guard let name, name.hasPrefix("fail-"), let code = PipelineRequestError.Code(rawValue: String(name.dropFirst(5))) else { return nil }
        return PipelineRequestError(code: code, message: "test failure \(code.rawValue)")
    }

    func evaluate(eventJSON: [UInt8], flow: String?, timeout: Double) async throws(PipelineRequestError) -> Evaluation {
        if let e = Self.failure(flow) { throw e }
        let event: UEBAEvent
        do { event = try UEBAEvent.decode(json: eventJSON) } catch {
            throw PipelineRequestError(code: .invalid, message: error.message, field: error.field.isEmpty ? nil : error.field)
        }
        let stats = [StatisticReading(name: "distinctCountries", key: event.originalIdentity, before: .int(1), current: .int(2))]
        let mfa = Decision(
            flow: "login", action: .mfa, methods: [.otp, .sms], branch: 0, suppressedByCooldown: false,
            challengeId: Self.challengeId, expiresAt: Self.expiresAt, failMode: .closed,
            firedPolicies: [PolicyExplanation(policy: "impossible-travel", judgment: "speedKmh > 900", statistics: stats,
                                              returns: ValueMap([("speedKmh", .double(1200.5))]))],
            errors: [], returns: ValueMap([("risk", .string("high"))]))
        let allow = Decision(
            flow: "audit", action: .allow, methods: [], branch: nil, suppressedByCooldown: false, challengeId: nil,
            expiresAt: nil, failMode: .open, firedPolicies: [], errors: ["policy x: division by zero"], returns: ValueMap())
        return Evaluation(coordinates: Self.coordinates, event: event, decisions: flow == "audit" ? [allow] : [mfa, allow])
    }

    func mfaStatus(user: String, timeout: Double) async throws(PipelineRequestError) -> MFAStatus {
        if let e = Self.failure(user) { throw e }
        guard user == "locked" else { return MFAStatus(user: user, pending: [], lastVerified: 1_767_225_000_000, failMode: .open) }
        let p = PendingChallenge(flow: "login", id: Self.challengeId, methods: [.face], since: 1_767_225_600_000, expiresAt: Self.expiresAt)
        return MFAStatus(user: user, pending: [p], lastVerified: nil, failMode: .closed)
    }

    func submitMFAResult(json: [UInt8], timeout: Double) async throws(PipelineRequestError) -> MFAResultOutcome {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
            throw PipelineRequestError(code: .invalid, message: "the body is not a JSON object")
        }
        for field in ["mfaEventId", "user", "method", "outcome"] where !(object[field] is String) {
            throw PipelineRequestError(code: .invalid, message: "\(field): required string", field: field)
        }
        let id = object["mfaEventId"] as! String
        if id.hasPrefix("unknown") { throw PipelineRequestError(code: .unknownChallenge, message: "no pending challenge \(id)") }
        if id.hasPrefix("expired") { throw PipelineRequestError(code: .expiredChallenge, message: "challenge \(id) expired") }
        guard let method = MFAMethod(rawValue: object["method"] as! String) else {
            throw PipelineRequestError(code: .invalid, message: "method: unknown", field: "method")
        }
        guard let outcome = MFAResult.Outcome(rawValue: object["outcome"] as! String) else {
            throw PipelineRequestError(code: .invalid, message: "outcome: must be verified or failed", field: "outcome")
        }
        let result = MFAResult(challengeId: id, user: object["user"] as! String, method: method, outcome: outcome, time: 1_767_225_700_000)
        return MFAResultOutcome(result: result, cleared: outcome == .verified, coordinates: Self.coordinates)
    }

    func releaseUser(user: String, timeout: Double) async throws(PipelineRequestError) -> ReleaseOutcome {
        if let f = Self.failure(user) { throw f }
        return ReleaseOutcome(user: user, released: 1)
    }

    /// RFC 6238's test secret.
    static let totpSecret = Array("12345678901234567890".utf8)

    func enrollFactor(user: String, kind: Factor.Kind, timeout: Double) async throws(PipelineRequestError) -> FactorEnrolment {
        if let f = Self.failure(user) { throw f }
        return FactorEnrolment(user: user, kind: kind, secret: Self.totpSecret, otpauthURI: "otpauth://totp/camfa:\(user)?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
    }

    /// The daemon's own address check and mask; a challenge id `unknown…` is unknown.
    func enrollCodeFactor(user: String, kind: Factor.Kind, address: String, timeout: Double) async throws(PipelineRequestError) -> CodeSent {
        if let f = Self.failure(user) { throw f }
        try CodeAddress.check(address, kind: kind)
        return CodeSent(user: user, kind: kind, challengeId: nil, expiresAt: Self.expiresAt, maskedAddress: CodeAddress.masked(address, kind: kind))
    }

    func sendCode(challengeId: String, user: String, method: MFAMethod, timeout: Double) async throws(PipelineRequestError) -> CodeSent {
        if let f = Self.failure(user) { throw f }
        guard let kind = Factor.Kind(method: method), kind.sendsCodes else {
            throw PipelineRequestError(code: .invalid, message: "camfa sends codes for email and sms, not \(method.rawValue)", field: "method")
        }
        if challengeId.hasPrefix("unknown") { throw PipelineRequestError(code: .unknownChallenge, message: "no pending challenge \(challengeId)") }
        let address = kind == .email ? "alice@example.com" : "+14155550123"
        return CodeSent(user: user, kind: kind, challengeId: challengeId, expiresAt: Self.expiresAt, maskedAddress: CodeAddress.masked(address, kind: kind))
    }

    func confirmFactor(user: String, kind: Factor.Kind, code: String, timeout: Double) async throws(PipelineRequestError) -> FactorConfirmation {
        if let f = Self.failure(user) { throw f }
        if code == "000000" { throw PipelineRequestError(code: .wrongCode, message: "the code does not match the factor") }
        return FactorConfirmation(user: user, kind: kind)
    }

    func verifyChallenge(challengeId: String, user: String, method: MFAMethod, code: String, timeout: Double)
        async throws(PipelineRequestError) -> ChallengeVerification
    {
        if let f = Self.failure(user) { throw f }
        if user == "lockedout" {
            var e = PipelineRequestError(code: .lockedOut, message: "locked out")
            e.retryAt = Int64(Date().timeIntervalSince1970 * 1000) + 90_000
            throw e
        }
        if code == "000000" { throw PipelineRequestError(code: .wrongCode, message: "the code does not match the factor") }
        var v = ChallengeVerification(user: user, challengeId: challengeId, method: method, app: "portal", flow: "login",
                                      time: 1_767_225_700_000, coordinates: Self.coordinates)
        if user == "remembered" {
            v.deviceToken = "dGVzdC1kZXZpY2UtdG9rZW4"
            v.deviceTrustedUntil = 1_769_817_700_000
        }
        return v
    }

    /// The face provider's shared secret of these tests.
    static let faceSecret = Array("camfa-test-face-secret-0123456789".utf8)

    /// The daemon's own signature check and verdict decoder, then this backend's answers.
    func submitFaceVerdict(body: [UInt8], signature: String?, timeout: Double) async throws(PipelineRequestError) -> FaceVerdictOutcome {
        guard let signature, CodeSender.signatureIsValid(signature, body: Data(body), secret: Self.faceSecret, now: Int64(Date().timeIntervalSince1970)) else {
            throw PipelineRequestError(code: .badSignature, message: "Camfa-Signature is missing, wrong or more than 5 minutes off camfa's clock")
        }
        let v = try FaceVerdict(json: body)
        if let id = v.mfaEventId {
            return .verified(try await verifyChallenge(challengeId: id, user: v.user, method: .face, code: v.codeToCheck, timeout: timeout))
        }
        return .confirmed(try await confirmFactor(user: v.user, kind: .face, code: v.codeToCheck, timeout: timeout))
    }

    func revokeDevices(user: String, timeout: Double) async throws(PipelineRequestError) -> Int {
        if let f = Self.failure(user) { throw f }
        return 2
    }

    func reloadPolicies() async throws(PipelineRequestError) -> ReloadReport {
        if reloadFails {
            throw PipelineRequestError(code: .reloadFailed, message: "policies/a.yaml:3:7: unknown field 'judgement'")
        }
        return ReloadReport(policies: 4, flows: 2)
    }
}
