import CAMFACore
import Foundation
import CAMFADaemon
import CAMFAFactors
import CAMFATokens

/// The JSON shapes of the 2xx answers (schemas/openapi.yaml). Decisions reuse
/// `Decision.jsonValue`, the shape `camfa replay` and the MFA event share, with the two
/// HTTP spellings: the challenge id is `mfaEventId` (it is the MFA event's `id`) and times
/// are RFC 3339, as in the MFA event.
enum ResponseBodies {
    static func evaluation(_ e: Evaluation) -> Value {
        var m = ValueMap()
        m[string: "mfaRequired"] = .bool(e.decisions.contains { $0.action == .mfa })
        m[string: "coordinates"] = coordinates(e.coordinates)
        m[string: "decisions"] = .list(e.decisions.map(decision))
        return .map(m)
    }

    static func decision(_ d: Decision) -> Value {
        guard case .map(let base) = d.jsonValue else { return d.jsonValue }
        var m = ValueMap()
        for (k, v) in base.entries {
            switch k {
            case .string("challengeId"): m[string: "mfaEventId"] = v
            case .string("expiresAt"): m[string: "expiresAt"] = time(d.expiresAt)
            default: m[k] = v
            }
        }
        return .map(m)
    }

    static func status(_ s: MFAStatus) -> Value {
        var m = ValueMap()
        m[string: "user"] = .string(s.user)
        m[string: "mfaVerified"] = .bool(s.mfaVerified)
        m[string: "failMode"] = .string(s.failMode.rawValue)
        m[string: "lastVerified"] = time(s.lastVerified)
        func challenge(_ p: PendingChallenge) -> Value {
            var c = ValueMap()
            c[string: "flow"] = .string(p.flow)
            c[string: "mfaEventId"] = .string(p.id)
            c[string: "methods"] = .list(p.methods.map { .string($0.rawValue) })
            c[string: "since"] = time(p.since)
            c[string: "expiresAt"] = time(p.expiresAt)
            return .map(c)
        }
        m[string: "pending"] = .list(s.pending.map(challenge))
        m[string: "expired"] = .list(s.expired.map(challenge))
        if !s.mfaVerified {
            m[string: "reason"] = .string(s.pending.isEmpty
                ? "a challenge expired unanswered: the user stays locked until a verified result for a new challenge or an admin release"
                : "a challenge is pending")
        }
        return .map(m)
    }

    static func result(_ o: MFAResultOutcome) -> Value {
        var m = ValueMap()
        m[string: "mfaEventId"] = .string(o.result.challengeId)
        m[string: "user"] = .string(o.result.user)
        m[string: "method"] = .string(o.result.method.rawValue)
        m[string: "outcome"] = .string(o.result.outcome.rawValue)
        m[string: "cleared"] = .bool(o.cleared)
        m[string: "coordinates"] = coordinates(o.coordinates)
        return .map(m)
    }

    static func tokenVerification(_ v: MFATokens.Verification) -> Value {
        var m = ValueMap()
        switch v {
        case .invalid(let reason):
            m[string: "valid"] = .bool(false)
            m[string: "reason"] = .string(reason)
        case .valid(let claims):
            m[string: "valid"] = .bool(true)
            m[string: "originalIdentity"] = .string(claims.sub.value)
            m[string: "app"] = .string(claims.aud.value.first ?? "")
            m[string: "mfaEventId"] = .string(claims.mfaEventId)
            m[string: "method"] = .string(MFATokens.method(amr: claims.amr.first ?? ""))
            m[string: "authTime"] = time(Int64(claims.iat.value.timeIntervalSince1970 * 1000))
            m[string: "expiresAt"] = time(Int64(claims.exp.value.timeIntervalSince1970 * 1000))
            if let acr = claims.acr { m[string: "acr"] = .string(acr) }
        }
        return .map(m)
    }

    static func enrolment(_ e: FactorEnrolment) -> Value {
        .map(ValueMap([
            ("user", .string(e.user)), ("factor", .string(e.kind.rawValue)), ("secret", .string(Base32.encode(e.secret))),
            ("otpauthUri", .string(e.otpauthURI)), ("confirmed", .bool(false)),
        ]))
    }

    /// A code on its way; `confirmed` is set for an enrolment (false) only.
    static func confirmation(_ c: FactorConfirmation) -> Value {
        .map(ValueMap([("user", .string(c.user)), ("factor", .string(c.kind.rawValue)), ("confirmed", .bool(true))]))
    }

    static func codeSent(_ c: CodeSent, confirmed: Bool?) -> Value {
        var m = ValueMap([("user", .string(c.user)), ("sentTo", .string(c.maskedAddress)), ("expiresAt", time(c.expiresAt))])
        if let confirmed {
            m[string: "factor"] = .string(c.kind.rawValue)
            m[string: "confirmed"] = .bool(confirmed)
        } else {
            m[string: "method"] = .string(c.kind.method.rawValue)
            if let id = c.challengeId { m[string: "mfaEventId"] = .string(id) }
        }
        return .map(m)
    }

    static func reload(_ r: ReloadReport) -> Value {
        .map(ValueMap([("policies", .int(Int64(r.policies))), ("flows", .int(Int64(r.flows)))]))
    }

    static func coordinates(_ c: MFAEvent.Coordinates) -> Value {
        .map(ValueMap([("topic", .string(c.topic)), ("partition", .int(Int64(c.partition))), ("offset", .int(c.offset))]))
    }

    static func time(_ ms: Int64?) -> Value {
        ms.map { .string(RFC3339.format(milliseconds: $0)) } ?? .null
    }
}
