import CAMFACore
import CAMFADaemon
import CAMFATokens
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus

/// The endpoints of schemas/openapi.yaml. Each handler checks its scope first (401/403
/// before the body is read), then reads at most `http.maxBodyBytes` (413).
struct Routes: Sendable {
    let http: Configuration.HTTP
    let backend: any CAMFABackend
    let access: Access
    let registry: PrometheusCollectorRegistry
    let tokens: MFATokens
    /// Epoch milliseconds: injected, so token expiry is testable.
    let clock: @Sendable () -> Int64
    let logger: Logger
    /// Forwards requests for users another instance processes; nil: they answer not-owned.
    var forwarder: Forwarder?

    var timeout: Double { Double(http.requestTimeout) / 1000 }

    func register(on router: Router<BasicRequestContext>) {
        router.add(middleware: ErrorMiddleware(logger: logger))
        router.get("/healthz") { request, _ in
            try access.check(request, endpoint: "/healthz", scope: .admin)
            return JSONResponse.make(.ok, .map(ValueMap([("status", .string("alive"))])))
        }
        router.get("/readyz") { request, _ in
            try access.check(request, endpoint: "/readyz", scope: .admin)
            let s = backend.health.snapshot(maxLag: http.readinessMaxLag)
            var m = ValueMap()
            m[string: "ready"] = .bool(s.ready)
            if let reason = s.unhealthyReason { m[string: "reason"] = .string(reason) }
            return JSONResponse.make(s.ready ? .ok : .serviceUnavailable, .map(m))
        }
        router.get("/metrics") { request, _ in
            try access.check(request, endpoint: "/metrics", scope: .admin)
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
        }
        router.post("/v1/evaluate") { request, _ in
            try access.check(request, endpoint: "/v1/evaluate", scope: .evaluate)
            let body = try await readBody(request)
            let flow = request.uri.queryParameters.get("flow")
            let evaluation = try await call(request, body) { () async throws(PipelineRequestError) in
                try await backend.evaluate(eventJSON: body, flow: flow, timeout: timeout)
            }
            return JSONResponse.make(.ok, ResponseBodies.evaluation(evaluation))
        }
        router.get("/v1/users/:id/mfa-status") { request, context in
            try access.check(request, endpoint: "/v1/users/{id}/mfa-status", scope: .status)
            let user = try userID(context)
            let status = try await call(request) { () async throws(PipelineRequestError) in
                try await backend.mfaStatus(user: user, timeout: timeout)
            }
            return JSONResponse.make(.ok, ResponseBodies.status(status))
        }
        router.post("/v1/mfa-results") { request, _ in
            let caller = try access.check(request, endpoint: "/v1/mfa-results", scope: .results)
            let body = try await readBody(request)
            // A caller who cannot read the status must not learn from the answer that an
            // id it guessed is real (expired, or answered with another method).
            let mayReadStatus = access.allows(request, scope: .status)
            let outcome = try await call(request, body) { () async throws(PipelineRequestError) in
                do throws(PipelineRequestError) { return try await backend.submitMFAResult(json: body, timeout: timeout) } catch {
                    // Per key: a client guessing challenge ids shows here (and, per user, to
                    // the policies as rejected results).
                    if [.unknownChallenge, .expiredChallenge, .methodNotOffered].contains(error.code) {
                        Counter(label: "camfa_mfa_results_rejected_total", dimensions: [("key", caller ?? "-"), ("code", error.code.rawValue)]).increment()
                    }
                    guard !mayReadStatus, error.code == .expiredChallenge || error.code == .methodNotOffered else { throw error }
                    throw PipelineRequestError(code: .unknownChallenge, message: "no pending challenge with this id for the user")
                }
            }
            return JSONResponse.make(.ok, ResponseBodies.result(outcome))
        }
        router.post("/v1/users/:id/release") { request, context in
            let caller = try access.check(request, endpoint: "/v1/users/{id}/release", scope: .admin)
            let user = try userID(context)
            let outcome = try await call(request) { () async throws(PipelineRequestError) in
                try await backend.releaseUser(user: user, timeout: timeout)
            }
            logger.notice("user released over HTTP", metadata: ["key": "\(caller ?? "-")", "challenges": "\(outcome.released)"])
            return JSONResponse.make(.ok, .map(ValueMap([("user", .string(outcome.user)), ("released", .int(Int64(outcome.released)))])))
        }
        router.post("/v1/users/:id/factors/totp") { request, context in
            let caller = try access.check(request, endpoint: "/v1/users/{id}/factors/totp", scope: .enroll)
            let user = try userID(context)
            let raw = try await readBody(request)
            _ = try JSONBody(raw, allowed: [], optionalEmpty: true)
            let enrolment = try await call(request, raw) { () async throws(PipelineRequestError) in
                try await backend.enrollFactor(user: user, kind: .totp, timeout: timeout)
            }
            logger.notice("factor enrolled over HTTP", metadata: ["key": "\(caller ?? "-")", "factor": "totp"])
            return JSONResponse.make(.ok, ResponseBodies.enrolment(enrolment))
        }
        // Email and SMS factors: the address is sealed and sent the code that confirms it.
        for (kind, field) in [(Factor.Kind.email, "address"), (.sms, "number")] {
            router.post("/v1/users/:id/factors/\(kind.rawValue)") { request, context in
                let caller = try access.check(request, endpoint: "/v1/users/{id}/factors/\(kind.rawValue)", scope: .enroll)
                let user = try userID(context)
                let raw = try await readBody(request)
                let body = try JSONBody(raw, allowed: [field])
                let address = try body.string(field)
                let sent = try await call(request, raw) { () async throws(PipelineRequestError) in
                    try await backend.enrollCodeFactor(user: user, kind: kind, address: address, timeout: timeout)
                }
                logger.notice("factor enrolled over HTTP", metadata: ["key": "\(caller ?? "-")", "factor": "\(kind.rawValue)"])
                return JSONResponse.make(.ok, ResponseBodies.codeSent(sent, confirmed: false))
            }
        }
        // A face factor: the provider checks the user's face; camfa sends it the code that
        // its signed verdict (POST /v1/face/verdicts) answers.
        router.post("/v1/users/:id/factors/face") { request, context in
            let caller = try access.check(request, endpoint: "/v1/users/{id}/factors/face", scope: .enroll)
            let user = try userID(context)
            let raw = try await readBody(request)
            _ = try JSONBody(raw, allowed: [], optionalEmpty: true)
            let sent = try await call(request, raw) { () async throws(PipelineRequestError) in
                try await backend.enrollCodeFactor(user: user, kind: .face, address: user, timeout: timeout)
            }
            logger.notice("factor enrolled over HTTP", metadata: ["key": "\(caller ?? "-")", "factor": "face"])
            return JSONResponse.make(.ok, ResponseBodies.codeSent(sent, confirmed: false))
        }
        // No API key: the provider proves itself with the signature over the body.
        router.post("/v1/face/verdicts") { request, _ in
            let raw = try await readBody(request)
            let signature = request.headers[HTTPField.Name("Camfa-Signature")!]
            let outcome = try await call(request, raw) { () async throws(PipelineRequestError) in
                do throws(PipelineRequestError) {
                    return try await backend.submitFaceVerdict(body: raw, signature: signature, timeout: timeout)
                } catch {
                    Self.countRefusal(error, by: "face-provider")
                    throw error
                }
            }
            switch outcome {
            case .confirmed(let c):
                return JSONResponse.make(.ok, ResponseBodies.confirmation(c))
            case .verified(let v):
                return JSONResponse.make(.ok, try await verificationAnswer(v))
            }
        }
        // A face factor is confirmed by its provider's verdict, not by a code a caller types.
        for kind in Factor.Kind.allCases where kind != .face {
            router.post("/v1/users/:id/factors/\(kind.rawValue)/confirm") { request, context in
                try access.check(request, endpoint: "/v1/users/{id}/factors/\(kind.rawValue)/confirm", scope: .enroll)
                let user = try userID(context)
                let raw = try await readBody(request)
                let body = try JSONBody(raw, allowed: ["code"])
                let code = try body.string("code")
                let confirmation = try await call(request, raw) { () async throws(PipelineRequestError) in
                    try await backend.confirmFactor(user: user, kind: kind, code: code, timeout: timeout)
                }
                return JSONResponse.make(.ok, ResponseBodies.confirmation(confirmation))
            }
        }
        router.post("/v1/challenges/:mfaEventId/send") { request, context in
            let caller = try access.check(request, endpoint: "/v1/challenges/{mfaEventId}/send", scope: .verify)
            let challengeId = try pathParameter(context, "mfaEventId")
            let raw = try await readBody(request)
            let body = try JSONBody(raw, allowed: ["user", "method"])
            let user = try body.string("user")
            let method = try Self.methodField(body)
            let sent = try await call(request, raw) { () async throws(PipelineRequestError) in
                try await backend.sendCode(challengeId: challengeId, user: user, method: method, timeout: timeout)
            }
            logger.notice("code sent over HTTP", metadata: ["key": "\(caller ?? "-")", "method": "\(method.rawValue)"])
            return JSONResponse.make(.ok, ResponseBodies.codeSent(sent, confirmed: nil))
        }
        router.post("/v1/challenges/:mfaEventId/verify") { request, context in
            let caller = try access.check(request, endpoint: "/v1/challenges/{mfaEventId}/verify", scope: .verify)
            let challengeId = try pathParameter(context, "mfaEventId")
            let raw = try await readBody(request)
            let body = try JSONBody(raw, allowed: ["user", "method", "code"])
            let user = try body.string("user"), code = try body.string("code")
            let method = try Self.methodField(body)
            let verification = try await call(request, raw) { () async throws(PipelineRequestError) in
                do throws(PipelineRequestError) {
                    return try await backend.verifyChallenge(challengeId: challengeId, user: user, method: method, code: code, timeout: timeout)
                } catch {
                    Self.countRefusal(error, by: caller ?? "-")
                    throw error
                }
            }
            return JSONResponse.make(.ok, try await verificationAnswer(verification))
        }
        router.delete("/v1/users/:id/devices") { request, context in
            let caller = try access.check(request, endpoint: "/v1/users/{id}/devices", scope: .enroll)
            let user = try userID(context)
            let revoked = try await call(request) { () async throws(PipelineRequestError) in try await backend.revokeDevices(user: user, timeout: timeout) }
            logger.notice("trusted devices revoked over HTTP", metadata: ["key": "\(caller ?? "-")", "devices": "\(revoked)"])
            return JSONResponse.make(.ok, .map(ValueMap([("user", .string(user)), ("revoked", .int(Int64(revoked)))])))
        }
        // Open by design (RFC 7517): verifiers need the public keys and nothing else.
        router.get("/.well-known/jwks.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/jwk-set+json", .cacheControl: "public, max-age=300"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: tokens.jwks)))
        }
        router.post("/v1/tokens/verify") { request, _ in
            try access.check(request, endpoint: "/v1/tokens/verify", scope: .status)
            let body = try TokenVerifyRequest(json: try await readBody(request))
            let verification = await tokens.verify(body.mfaToken, audience: body.audience, now: clock() / 1000)
            return JSONResponse.make(.ok, ResponseBodies.tokenVerification(verification))
        }
        router.post("/v1/admin/reload") { request, _ in
            let caller = try access.check(request, endpoint: "/v1/admin/reload", scope: .admin)
            let report = try await call { () async throws(PipelineRequestError) in try await backend.reloadPolicies() }
            logger.notice("policies reloaded over HTTP", metadata: [
                "key": "\(caller ?? "-")", "policies": "\(report.policies)", "flows": "\(report.flows)",
            ])
            return JSONResponse.make(.ok, ResponseBodies.reload(report))
        }
        if http.challengePage { registerChallengePage(on: router) }
    }

    /// Per caller (an API key, the face provider, the challenge page): someone guessing
    /// codes shows here, as the user's failures show to the policies.
    static func countRefusal(_ error: PipelineRequestError, by caller: String) {
        guard [.wrongCode, .replayedCode, .tooManyAttempts, .lockedOut, .badSignature].contains(error.code) else { return }
        Counter(label: "camfa_verifications_refused_total", dimensions: [("key", caller), ("code", error.code.rawValue)]).increment()
    }

    /// The answer to a verified challenge (`ChallengeVerification` in the OpenAPI file).
    func verificationAnswer(_ v: ChallengeVerification) async throws(APIError) -> Value {
        let (token, expiresAt) = try await mfaToken(for: v)
        var answer = ValueMap([
            ("mfaToken", .string(token)), ("user", .string(v.user)), ("mfaEventId", .string(v.challengeId)), ("method", .string(v.method.rawValue)),
            ("expiresAt", ResponseBodies.time(expiresAt)),
        ])
        if let device = v.deviceToken, let until = v.deviceTrustedUntil {
            answer[string: "deviceToken"] = .string(device)
            answer[string: "deviceTrustedUntil"] = ResponseBodies.time(until)
        }
        return .map(answer)
    }

    /// The mfaToken of a verified challenge and its expiry (epoch ms).
    func mfaToken(for v: ChallengeVerification) async throws(APIError) -> (String, Int64) {
        let now = clock() / 1000
        do {
            // A challenge of an event without an app (`mfa` results judged by global flows)
            // is for no app: the audience is camfa's issuer then (README "The MFA loop").
            let token = try await tokens.issue(user: v.user, app: v.app ?? tokens.issuer, mfaEventId: v.challengeId,
                                               method: v.method.rawValue, acr: v.acr, jti: UUID().uuidString, now: now)
            return (token, (now + tokens.lifetime) * 1000)
        } catch {
            // The challenge is cleared already: the user verified. Without a token the
            // caller can still read mfaVerified from the status.
            // Not a 503: a retry would find the challenge cleared, not a token.
            logger.error("cannot sign an mfaToken: \(error)")
            throw APIError(status: .internalServerError, code: "internal", message: "the challenge is verified, but no mfaToken could be signed")
        }
    }

    /// A request body that must be a JSON object of string fields among `allowed`.
    struct JSONBody {
        var object: [String: Any]

        init(_ json: [UInt8], allowed: Set<String>, optionalEmpty: Bool = false) throws(APIError) {
            if optionalEmpty && json.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
                object = [:]
                return
            }
            guard let o = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any] else {
                throw APIError(status: .badRequest, code: "invalid", message: "the body must be a JSON object")
            }
            for key in o.keys.sorted() where !allowed.contains(key) {
                let list = allowed.isEmpty ? "none" : allowed.sorted().joined(separator: ", ")
                throw APIError(status: .badRequest, code: "invalid", message: "unknown field (allowed: \(list))", field: key)
            }
            object = o
        }

        func string(_ field: String) throws(APIError) -> String {
            guard let s = object[field] as? String, !s.isEmpty else {
                throw APIError(status: .badRequest, code: "invalid", message: "\(field) is required (a non-empty string)", field: field)
            }
            return s
        }
    }

    /// `{"mfaToken", "audience"?}`.
    struct TokenVerifyRequest {
        var mfaToken: String
        var audience: String?

        init(json: [UInt8]) throws(APIError) {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any] else {
                throw APIError(status: .badRequest, code: "invalid", message: "the body must be a JSON object {\"mfaToken\": ...}")
            }
            for key in object.keys where key != "mfaToken" && key != "audience" {
                throw APIError(status: .badRequest, code: "invalid", message: "unknown field (allowed: mfaToken, audience)", field: key)
            }
            guard let token = object["mfaToken"] as? String, !token.isEmpty, token.utf8.count <= 8192 else {
                throw APIError(status: .badRequest, code: "invalid", message: "mfaToken must be a non-empty string of at most 8192 bytes", field: "mfaToken")
            }
            if let a = object["audience"], !(a is String) {
                throw APIError(status: .badRequest, code: "invalid", message: "audience must be a string (the app id)", field: "audience")
            }
            mfaToken = token
            audience = object["audience"] as? String
        }
    }

    /// The `{id}` path parameter, percent-decoded; 400 when empty.
    func userID(_ context: BasicRequestContext) throws(APIError) -> String { try pathParameter(context, "id") }

    /// A path parameter, percent-decoded; 400 naming it when empty.
    func pathParameter(_ context: BasicRequestContext, _ name: String) throws(APIError) -> String {
        let raw = context.parameters.get(name) ?? ""
        let value = raw.removingPercentEncoding ?? raw
        guard !value.isEmpty else {
            throw APIError(status: .badRequest, code: "invalid", message: name == "id" ? "the user id is empty" : "\(name) is empty", field: name)
        }
        return value
    }

    static func methodField(_ body: JSONBody) throws -> MFAMethod {
        guard let method = MFAMethod(rawValue: try body.string("method")) else {
            throw APIError(status: .badRequest, code: "invalid", message: "method must be one of \(MFAMethod.allCases.map(\.rawValue).joined(separator: ", "))", field: "method")
        }
        return method
    }

    /// Every route, for 405 answers (ErrorMiddleware); `:` segments match any one segment.
    static let templates: [(method: String, path: String)] = [
        ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("POST", "/v1/evaluate"),
        ("GET", "/v1/users/:id/mfa-status"), ("POST", "/v1/mfa-results"), ("POST", "/v1/users/:id/release"),
        ("POST", "/v1/admin/reload"), ("GET", "/.well-known/jwks.json"), ("POST", "/v1/tokens/verify"),
        ("POST", "/v1/users/:id/factors/totp"), ("POST", "/v1/users/:id/factors/totp/confirm"), ("POST", "/v1/challenges/:mfaEventId/verify"),
        ("DELETE", "/v1/users/:id/devices"), ("POST", "/v1/users/:id/factors/email"), ("POST", "/v1/users/:id/factors/sms"),
        ("POST", "/v1/users/:id/factors/email/confirm"), ("POST", "/v1/users/:id/factors/sms/confirm"), ("POST", "/v1/challenges/:mfaEventId/send"),
        ("GET", "/challenge/:mfaEventId"), ("POST", "/challenge/:mfaEventId"),
        ("POST", "/v1/users/:id/factors/face"), ("POST", "/v1/face/verdicts"),
    ]

    /// The methods the routes answer at `path`; empty for an unknown path.
    static func methods(for path: String) -> [String] {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        return templates.filter { t in
            let tp = t.path.split(separator: "/", omittingEmptySubsequences: false)
            return tp.count == parts.count && zip(tp, parts).allSatisfy { $0.hasPrefix(":") ? !$1.isEmpty : $0 == $1 }
        }.map(\.method)
    }

    /// Refuses by Content-Length before reading, and stops reading a chunked body at the
    /// limit, so a large body never sits in memory whole.
    func readBody(_ request: Request) async throws -> [UInt8] {
        let limit = http.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit { throw APIError.tooLarge(limit: limit) }
        do {
            let buffer = try await request.body.collect(upTo: limit)
            return Array(buffer: buffer)
        } catch let e as HTTPResponseError where e.status == .contentTooLarge {
            throw APIError.tooLarge(limit: limit)
        }
    }

    /// Runs `op`; a not-owned refusal that names the owning instance is answered by that
    /// instance instead (`request` and its `body` forwarded there once, README "Any
    /// instance answers"), thrown as a `ForwardedResponse` for the ErrorMiddleware.
    func call<T>(_ request: Request? = nil, _ body: [UInt8] = [], _ op: () async throws(PipelineRequestError) -> T) async throws -> T {
        do { return try await op() } catch {
            if error.code == .notOwned, let owner = error.owner, let request, let forwarder, !Forwarder.wasForwarded(request) {
                throw ForwardedResponse(response: try await forwarder.forward(request, body: body, to: owner))
            }
            throw APIError(error)
        }
    }
}
