import CAMFACore
import CAMFAFactors
import Foundation

/// What factor requests become in the input topic (`camfa.kind`, under camfa's MAC): like
/// MFA results, they change the user's state, so they are applied by the user's task, in
/// order with the user's events, checkpointed with them and replayed after a crash. Secrets
/// and codes are sealed (FactorSeal) before they are written. `time` is camfa's clock when
/// the request arrived: the only clock the task uses for them.
enum FactorRecord: Sendable, Equatable {
    /// A new factor for the user (TOTP: the sealed shared secret; email, sms: the sealed
    /// address or number, and the sealed code that confirms it).
    case enrolment(user: String, kind: Factor.Kind, sealed: [UInt8], code: [UInt8]?, time: Int64)
    /// A code (sealed) camfa sends for a challenge to the user's email or SMS factor.
    case codeIssue(user: String, challengeId: String, method: MFAMethod, code: [UInt8], time: Int64)
    /// A first code that confirms the factor (sealed).
    case confirmation(user: String, kind: Factor.Kind, code: [UInt8], time: Int64)
    /// A code for a challenge (sealed), and the SHA-256 of the device token the caller
    /// drew, trusted if the challenge's flow remembers devices.
    case verification(user: String, challengeId: String, method: MFAMethod, code: [UInt8], deviceTokenHash: [UInt8]?, time: Int64)
    /// `DELETE /v1/users/{id}/devices`.
    case revocation(user: String, time: Int64)

    static let enrolmentKind = "factor-enrolment"
    static let confirmationKind = "factor-confirmation"
    static let verificationKind = "challenge-verification"
    static let revocationKind = "devices-revocation"
    static let codeIssueKind = "code-issue"
    static let kinds = [enrolmentKind, confirmationKind, verificationKind, revocationKind, codeIssueKind]

    var kind: String {
        switch self {
        case .enrolment: Self.enrolmentKind
        case .confirmation: Self.confirmationKind
        case .verification: Self.verificationKind
        case .revocation: Self.revocationKind
        case .codeIssue: Self.codeIssueKind
        }
    }

    var user: String {
        switch self {
        case .enrolment(let u, _, _, _, _), .confirmation(let u, _, _, _), .verification(let u, _, _, _, _, _), .revocation(let u, _),
             .codeIssue(let u, _, _, _, _): u
        }
    }

    var time: Int64 {
        switch self {
        case .enrolment(_, _, _, _, let t), .confirmation(_, _, _, let t), .verification(_, _, _, _, _, let t), .revocation(_, let t),
             .codeIssue(_, _, _, _, let t): t
        }
    }

    var json: [UInt8] {
        var m = ValueMap([("user", .string(user)), ("time", .int(time))])
        switch self {
        case .enrolment(_, let kind, let sealed, let code, _):
            m[string: "factor"] = .string(kind.rawValue)
            m[string: "sealed"] = .string(Data(sealed).base64EncodedString())
            if let code { m[string: "code"] = .string(Data(code).base64EncodedString()) }
        case .codeIssue(_, let challengeId, let method, let code, _):
            m[string: "challengeId"] = .string(challengeId)
            m[string: "method"] = .string(method.rawValue)
            m[string: "code"] = .string(Data(code).base64EncodedString())
        case .confirmation(_, let kind, let code, _):
            m[string: "factor"] = .string(kind.rawValue)
            m[string: "code"] = .string(Data(code).base64EncodedString())
        case .verification(_, let challengeId, let method, let code, let hash, _):
            m[string: "challengeId"] = .string(challengeId)
            m[string: "method"] = .string(method.rawValue)
            m[string: "code"] = .string(Data(code).base64EncodedString())
            if let hash { m[string: "deviceTokenHash"] = .string(Data(hash).base64EncodedString()) }
        case .revocation: break
        }
        return JSONWriter.encode(.map(m))
    }

    /// The record of `kind`, or why its value is not one (for the dead letter).
    static func decode(kind: String, json: [UInt8]) -> Result<FactorRecord, FactorRecordError> {
        guard case .map(let m)? = try? JSONParser.parse(json, maxDepth: 2) else { return .failure(.init("the value is not a JSON object")) }
        guard case .string(let user)? = m[string: "user"], !user.isEmpty else { return .failure(.init("user must be a non-empty string")) }
        guard case .int(let time)? = m[string: "time"] else { return .failure(.init("time must be epoch milliseconds")) }
        func bytes(_ field: String) -> [UInt8]? {
            guard case .string(let s)? = m[string: field], let d = Data(base64Encoded: s) else { return nil }
            return [UInt8](d)
        }
        func factor() -> Factor.Kind? {
            guard case .string(let s)? = m[string: "factor"] else { return nil }
            return Factor.Kind(rawValue: s)
        }
        switch kind {
        case enrolmentKind:
            guard let k = factor(), let sealed = bytes("sealed") else { return .failure(.init("an enrolment is {user, factor, sealed, time}")) }
            let code = bytes("code")
            guard k.sendsCodes == (code != nil) else { return .failure(.init("an email or sms enrolment carries its code, a totp enrolment none")) }
            return .success(.enrolment(user: user, kind: k, sealed: sealed, code: code, time: time))
        case codeIssueKind:
            guard case .string(let id)? = m[string: "challengeId"], case .string(let ms)? = m[string: "method"],
                  let method = MFAMethod(rawValue: ms), let code = bytes("code") else {
                return .failure(.init("a code issue is {user, challengeId, method, code, time}"))
            }
            return .success(.codeIssue(user: user, challengeId: id, method: method, code: code, time: time))
        case confirmationKind:
            guard let k = factor(), let code = bytes("code") else { return .failure(.init("a confirmation is {user, factor, code, time}")) }
            return .success(.confirmation(user: user, kind: k, code: code, time: time))
        case revocationKind:
            return .success(.revocation(user: user, time: time))
        default:
            guard case .string(let id)? = m[string: "challengeId"], case .string(let ms)? = m[string: "method"],
                  let method = MFAMethod(rawValue: ms), let code = bytes("code") else {
                return .failure(.init("a verification is {user, challengeId, method, code, time}"))
            }
            let hash = bytes("deviceTokenHash")
            if m[string: "deviceTokenHash"] != nil, hash?.count != 32 { return .failure(.init("deviceTokenHash must be 32 bytes in base64")) }
            return .success(.verification(user: user, challengeId: id, method: method, code: code, deviceTokenHash: hash, time: time))
        }
    }
}

struct FactorRecordError: Error, Sendable, Equatable {
    var message: String
    init(_ message: String) { self.message = message }
}

/// The answers of factor requests (CAMFABackend).
public struct FactorEnrolment: Sendable, Equatable {
    public var user: String
    public var kind: Factor.Kind
    /// The shared secret, shown once: camfa keeps it sealed.
    public var secret: [UInt8]
    /// `otpauth://totp/…` for authenticator apps.
    public var otpauthURI: String
}

/// A code on its way to the user (enrolment of an email or SMS factor, or a challenge).
public struct CodeSent: Sendable, Equatable {
    public var user: String
    public var kind: Factor.Kind
    /// The challenge it answers; nil: the factor's confirmation.
    public var challengeId: String?
    /// Epoch ms.
    public var expiresAt: Int64
    /// The address or number, masked (a***@example.com, +*******4567).
    public var maskedAddress: String
}

public struct FactorConfirmation: Sendable, Equatable {
    public var user: String
    public var kind: Factor.Kind
}

/// A challenge passed with a code camfa checked.
public struct ChallengeVerification: Sendable, Equatable {
    public var user: String
    public var challengeId: String
    public var method: MFAMethod
    /// The challenged event's app (the mfaToken's audience).
    public var app: String?
    public var flow: String
    /// The flow's `acr`, for the mfaToken.
    public var acr: String?
    /// Epoch ms: when camfa received the code.
    public var time: Int64
    /// Where the verification was stored in the input topic.
    public var coordinates: MFAEvent.Coordinates
    /// Set when the challenge's flow remembers devices: the token to present as
    /// `custom.deviceToken`, trusted until `deviceTrustedUntil` (epoch ms).
    public var deviceToken: String?
    public var deviceTrustedUntil: Int64?
}

extension FactorCheck {
    /// The factor's check for `code` (sealed), whatever its kind.
    static func of(_ factor: Factor, code: [UInt8], user: String, time: Int64, seal: FactorSeal) -> FactorCheck {
        factor.kind.sendsCodes ? sent(factor, code: code, user: user, seal: seal) : totp(factor, code: code, user: user, time: time, seal: seal)
    }

    /// An email or SMS code against the one camfa sent (the engine checked it answers this
    /// challenge and is unexpired). Compared in constant time.
    static func sent(_ factor: Factor, code sealedCode: [UInt8], user: String, seal: FactorSeal) -> FactorCheck {
        guard let sent = factor.code, let expected = seal.open(sent.sealed, user: user, purpose: .code),
              let code = seal.open(sealedCode, user: user, purpose: .code) else { return .wrongCode }
        return HMACSHA256.equal(expected, code) ? .accepted(step: nil) : .wrongCode
    }

    /// A TOTP code against a sealed factor; a factor or code that does not open is a wrong
    /// code (the secret changed, or the record was not sealed for this user).
    static func totp(_ factor: Factor, code sealedCode: [UInt8], user: String, time: Int64, seal: FactorSeal) -> FactorCheck {
        guard factor.kind == .totp, let secret = seal.open(factor.sealed, user: user, purpose: .secret),
              let code = seal.open(sealedCode, user: user, purpose: .code) else { return .wrongCode }
        let seconds = time >= 0 ? time / 1000 : (time - 999) / 1000
        switch TOTPVerifier(totp: TOTP(secret: secret)).verify(String(decoding: code, as: UTF8.self), at: seconds, lastUsedStep: factor.lastUsedStep) {
        case .accepted(let step): return .accepted(step: step)
        case .wrongCode: return .wrongCode
        case .replayed: return .replayed
        }
    }
}
