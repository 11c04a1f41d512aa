@testable import CAMFACore
@testable import CAMFADaemon
import CAMFADelivery
import CAMFAServer
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// Every keyed endpoint: (method, path, spec template, scope, body).
let keyedEndpoints: [(String, String, String, Configuration.HTTP.Scope, Data?)] = [
    ("POST", "/v1/evaluate", "/v1/evaluate", .evaluate, Data(#"{"originalIdentity":"alice","requestDate":1767225600000}"#.utf8)),
    ("GET", "/v1/users/alice/mfa-status", "/v1/users/{id}/mfa-status", .status, nil),
    ("POST", "/v1/mfa-results", "/v1/mfa-results", .results,
     Data(#"{"mfaEventId":"c-1","user":"alice","method":"otp","outcome":"verified"}"#.utf8)),
    ("POST", "/v1/admin/reload", "/v1/admin/reload", .admin, nil),
    ("POST", "/v1/users/alice/release", "/v1/users/{id}/release", .admin, nil),
    ("GET", "/readyz", "/readyz", .admin, nil),
    ("GET", "/metrics", "/metrics", .admin, nil),
    ("POST", "/v1/users/alice/factors/totp", "/v1/users/{id}/factors/totp", .enroll, nil),
    ("POST", "/v1/users/alice/factors/totp/confirm", "/v1/users/{id}/factors/totp/confirm", .enroll, Data(#"{"code":"287082"}"#.utf8)),
    ("POST", "/v1/challenges/c-3-42-login/verify", "/v1/challenges/{mfaEventId}/verify", .verify,
     Data(#"{"user":"alice","method":"otp","code":"287082"}"#.utf8)),
    ("DELETE", "/v1/users/alice/devices", "/v1/users/{id}/devices", .enroll, nil),
    ("POST", "/v1/users/alice/factors/email", "/v1/users/{id}/factors/email", .enroll, Data(#"{"address":"alice@example.com"}"#.utf8)),
    ("POST", "/v1/users/alice/factors/sms", "/v1/users/{id}/factors/sms", .enroll, Data(#"{"number":"+14155550123"}"#.utf8)),
    ("POST", "/v1/users/alice/factors/email/confirm", "/v1/users/{id}/factors/email/confirm", .enroll, Data(#"{"code":"287082"}"#.utf8)),
    ("POST", "/v1/users/alice/factors/sms/confirm", "/v1/users/{id}/factors/sms/confirm", .enroll, Data(#"{"code":"287082"}"#.utf8)),
    ("POST", "/v1/challenges/c-3-42-login/send", "/v1/challenges/{mfaEventId}/send", .verify, Data(#"{"user":"alice","method":"email"}"#.utf8)),
    ("POST", "/v1/users/alice/factors/face", "/v1/users/{id}/factors/face", .enroll, nil),
]

@Suite struct HTTPAPITests {
    @Test func withoutAKeyOnlyHealthzAnswers() async throws {
        try await withServer { client in
            let health = try await client.send("GET", "/healthz", template: "/healthz")
            #expect(health.status == 200)
            #expect(health.json["status"] as? String == "alive")
            for (method, path, template, _, body) in keyedEndpoints {
                let r = try await client.send(method, path, template: template, body: body)
                #expect(r.status == 401, "\(method) \(path)")
                #expect(r.header("WWW-Authenticate")?.hasPrefix("Bearer") == true, "\(method) \(path)")
                #expect(r.error["code"] as? String == "unauthorized")
                let unknown = try await client.send(method, path, template: template, key: TestKeys.unknown, body: body)
                #expect(unknown.status == 401, "\(method) \(path) with an unknown key")
                let basic = try await client.send(method, path, template: template, authorization: "Basic \(TestKeys.key(for: .admin))", body: body)
                #expect(basic.status == 401, "\(method) \(path) with a Basic header")
            }
        }
    }

    @Test func aKeyWithoutTheScopeIs403AndWithItIs2xx() async throws {
        try await withServer { client in
            for (method, path, template, scope, body) in keyedEndpoints {
                for other in Configuration.HTTP.Scope.allCases where other != scope {
                    let r = try await client.send(method, path, template: template, key: TestKeys.key(for: other), body: body)
                    #expect(r.status == 403, "\(method) \(path) with \(other)")
                    #expect(r.error["code"] as? String == "forbidden")
                    #expect((r.error["message"] as? String)?.contains(scope.rawValue) == true)
                }
                let ok = try await client.send(method, path, template: template, key: TestKeys.key(for: scope), body: body)
                #expect(ok.status == 200, "\(method) \(path): \(ok.text)")
            }
        }
    }

    @Test func evaluateAnswersTheDecisionsWithTheMFATrigger() async throws {
        try await withServer { client in
            let (method, path, template, _, body) = keyedEndpoints[0]
            let r = try await client.send(method, path, template: template, key: TestKeys.evaluate, body: body)
            #expect(r.status == 200)
            #expect(r.json["mfaRequired"] as? Bool == true)
            let coordinates = r.json["coordinates"] as? [String: Any]
            #expect(coordinates?["partition"] as? Int == 3 && coordinates?["offset"] as? Int == 42)
            let decisions = r.json["decisions"] as? [[String: Any]] ?? []
            try #require(decisions.count == 2)
            #expect(decisions[0]["mfaEventId"] as? String == TestBackend.challengeId)
            #expect(decisions[0]["expiresAt"] as? String == RFC3339.format(milliseconds: TestBackend.expiresAt))
            #expect(decisions[0]["methods"] as? [String] == ["otp", "sms"])
            #expect(decisions[0]["failMode"] as? String == "closed")
            #expect(decisions[0]["challengeId"] == nil)
            let fired = decisions[0]["firedPolicies"] as? [[String: Any]]
            #expect(fired?.first?["policy"] as? String == "impossible-travel")
            #expect(decisions[1]["mfaEventId"] is NSNull && decisions[1]["expiresAt"] is NSNull)

            let audit = try await client.send("POST", "/v1/evaluate?flow=audit", template: template, key: TestKeys.evaluate, body: body)
            #expect(audit.json["mfaRequired"] as? Bool == false)
        }
    }

    @Test func statusReportsPendingChallengesAndTheFailMode() async throws {
        try await withServer { client in
            let template = "/v1/users/{id}/mfa-status"
            let locked = try await client.send("GET", "/v1/users/locked/mfa-status", template: template, key: TestKeys.status)
            #expect(locked.status == 200)
            #expect(locked.json["mfaVerified"] as? Bool == false)
            #expect(locked.json["failMode"] as? String == "closed")
            let pending = locked.json["pending"] as? [[String: Any]] ?? []
            #expect(pending.first?["mfaEventId"] as? String == TestBackend.challengeId)
            #expect(pending.first?["methods"] as? [String] == ["face"])

            let free = try await client.send("GET", "/v1/users/alice%40example.com/mfa-status", template: template, key: TestKeys.status)
            #expect(free.json["user"] as? String == "alice@example.com")
            #expect(free.json["mfaVerified"] as? Bool == true)
            #expect(free.json["failMode"] as? String == "open")
            #expect((free.json["pending"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func mfaResultsAndReload() async throws {
        try await withServer { client in
            let verified = try await client.send("POST", "/v1/mfa-results", template: "/v1/mfa-results", key: TestKeys.results,
                                                 body: Data(#"{"mfaEventId":"c-9","user":"bob","method":"sms","outcome":"verified"}"#.utf8))
            #expect(verified.status == 200)
            #expect(verified.json["cleared"] as? Bool == true && verified.json["mfaEventId"] as? String == "c-9")
            let failed = try await client.send("POST", "/v1/mfa-results", template: "/v1/mfa-results", key: TestKeys.results,
                                               body: Data(#"{"mfaEventId":"c-9","user":"bob","method":"sms","outcome":"failed"}"#.utf8))
            #expect(failed.json["cleared"] as? Bool == false)
            let unknown = try await client.send("POST", "/v1/mfa-results", template: "/v1/mfa-results", key: TestKeys.results,
                                                body: Data(#"{"mfaEventId":"unknown-1","user":"bob","method":"sms","outcome":"verified"}"#.utf8))
            #expect(unknown.status == 404)
            #expect(unknown.error["code"] as? String == "unknown-challenge")

            let reload = try await client.send("POST", "/v1/admin/reload", template: "/v1/admin/reload", key: TestKeys.admin)
            #expect(reload.json["policies"] as? Int == 4 && reload.json["flows"] as? Int == 2)
        }
        try await withServer(backend: TestBackend(reloadFails: true)) { client in
            let reload = try await client.send("POST", "/v1/admin/reload", template: "/v1/admin/reload", key: TestKeys.admin)
            #expect(reload.status == 422)
            #expect(reload.error["code"] as? String == "reload-failed")
            #expect((reload.error["message"] as? String)?.contains("policies/a.yaml:3:7") == true)
        }
    }

    @Test func eachPipelineErrorHasItsStatus() async throws {
        let body = keyedEndpoints[0].4
        try await withServer { client in
            let viaEvaluate: [(PipelineRequestError.Code, Int)] = [
                (.invalid, 400), (.unknownFlow, 404), (.notOwned, 503), (.unavailable, 503), (.timeout, 504),
            ]
            for (code, status) in viaEvaluate {
                let r = try await client.send("POST", "/v1/evaluate?flow=fail-\(code.rawValue)", template: "/v1/evaluate", key: TestKeys.evaluate, body: body)
                #expect(r.status == status, "\(code)")
                #expect(r.error["code"] as? String == code.rawValue)
                #expect((r.header("Retry-After") != nil) == (status == 503), "\(code)")
            }
            let viaStatus = try await client.send("GET", "/v1/users/fail-timeout/mfa-status", template: "/v1/users/{id}/mfa-status", key: TestKeys.status)
            #expect(viaStatus.status == 504)
            // A key without the status scope cannot tell an expired (real) id from an unknown one.
            let cases: [(String, String, Int, String)] = [
                ("unknown-7", TestKeys.results, 404, "unknown-challenge"), ("expired-7", TestKeys.results, 404, "unknown-challenge"),
                ("unknown-7", TestKeys.resultsAndStatus, 404, "unknown-challenge"),
                ("expired-7", TestKeys.resultsAndStatus, 410, "expired-challenge"),
            ]
            for (id, key, status, code) in cases {
                let r = try await client.send("POST", "/v1/mfa-results", template: "/v1/mfa-results", key: key,
                                              body: Data(#"{"mfaEventId":"\#(id)","user":"u","method":"otp","outcome":"verified"}"#.utf8))
                #expect(r.status == status && r.error["code"] as? String == code, "\(id) \(key == TestKeys.results ? "results" : "results+status")")
            }
            let missing = try await client.send("GET", "/v2/nothing", template: nil, key: TestKeys.admin)
            #expect(missing.status == 404 && missing.error["code"] as? String == "not-found")
        }
    }

    /// The factor endpoints' answers and refusals, each validated against the OpenAPI file.
    @Test func factorEndpointsAnswerTheirShapesAndRefusals() async throws {
        try await withServer { client in
            func verify(_ user: String, _ code: String, template: String = "/v1/challenges/{mfaEventId}/verify") async throws -> HTTPReply {
                try await client.send("POST", "/v1/challenges/c-1/verify", template: template, key: TestKeys.verify,
                                      body: Data(#"{"user":"\#(user)","method":"otp","code":"\#(code)"}"#.utf8))
            }
            let enrolled = try await client.send("POST", "/v1/users/dana/factors/totp", template: "/v1/users/{id}/factors/totp", key: TestKeys.enroll,
                                                 body: Data("{}".utf8))
            #expect(enrolled.status == 200 && enrolled.json["secret"] as? String == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "the RFC 6238 secret in base32")
            let extra = try await client.send("POST", "/v1/users/dana/factors/totp", template: "/v1/users/{id}/factors/totp", key: TestKeys.enroll,
                                              body: Data(#"{"issuer":"x"}"#.utf8))
            #expect(extra.status == 400 && extra.error["field"] as? String == "issuer")
            let wrong = try await client.send("POST", "/v1/users/dana/factors/totp/confirm", template: "/v1/users/{id}/factors/totp/confirm",
                                              key: TestKeys.enroll, body: Data(#"{"code":"000000"}"#.utf8))
            #expect(wrong.status == 422 && wrong.error["code"] as? String == "wrong-code")
            let ok = try await verify("alice", "287082")
            #expect(ok.status == 200 && ok.json["deviceToken"] == nil)
            let claims = try #require(ok.json["mfaToken"] as? String).split(separator: ".").count
            #expect(claims == 3, "a JWS")
            let remembered = try await verify("remembered", "287082")
            #expect(remembered.json["deviceToken"] as? String == "dGVzdC1kZXZpY2UtdG9rZW4" && remembered.json["deviceTrustedUntil"] is String)
            #expect(try await verify("alice", "000000").status == 422)
            let locked = try await verify("lockedout", "287082")
            #expect(locked.status == 429 && locked.error["code"] as? String == "locked-out")
            #expect(Int(locked.header("Retry-After") ?? "") ?? 0 >= 89, "Retry-After: the lockout's end")
            let noMethod = try await client.send("POST", "/v1/challenges/c-1/verify", template: "/v1/challenges/{mfaEventId}/verify",
                                                 key: TestKeys.verify, body: Data(#"{"user":"u","method":"sms2","code":"1234"}"#.utf8))
            #expect(noMethod.status == 400 && noMethod.error["field"] as? String == "method")
            let revoked = try await client.send("DELETE", "/v1/users/dana/devices", template: "/v1/users/{id}/devices", key: TestKeys.enroll)
            #expect(revoked.status == 200 && revoked.json["revoked"] as? Int == 2)
        }
    }

    @Test func codeFactorEndpointsAnswerTheirShapesAndRefusals() async throws {
        try await withServer { client in
            func enrol(_ kind: String, _ body: String) async throws -> HTTPReply {
                try await client.send("POST", "/v1/users/dana/factors/\(kind)", template: "/v1/users/{id}/factors/\(kind)", key: TestKeys.enroll,
                                      body: Data(body.utf8))
            }
            let email = try await enrol("email", #"{"address":"dana@example.com"}"#)
            #expect(email.status == 200 && email.json["sentTo"] as? String == "d***@example.com" && email.json["confirmed"] as? Bool == false, "\(email.json)")
            let sms = try await enrol("sms", #"{"number":"+14155550123"}"#)
            #expect(sms.status == 200 && sms.json["sentTo"] as? String == "+*******0123", "\(sms.json)")
            // Header injection and malformed addresses are refused before anything is sealed or sent.
            for bad in [#"{"address":"a@example.com\r\nBcc: x@evil.test"}"#, #"{"address":"no-at-sign"}"#, #"{"address":"<a@b.c>"}"#] {
                let r = try await enrol("email", bad)
                #expect(r.status == 400 && r.error["field"] as? String == "address", "\(bad)")
            }
            let badNumber = try await enrol("sms", #"{"number":"0800 123"}"#)
            #expect(badNumber.status == 400 && badNumber.error["field"] as? String == "number")
            let wrongField = try await enrol("sms", #"{"address":"+14155550123"}"#)
            #expect(wrongField.status == 400)
            func send(_ id: String, _ method: String) async throws -> HTTPReply {
                try await client.send("POST", "/v1/challenges/\(id)/send", template: "/v1/challenges/{mfaEventId}/send", key: TestKeys.verify,
                                      body: Data(#"{"user":"dana","method":"\#(method)"}"#.utf8))
            }
            let sent = try await send("c-1", "sms")
            #expect(sent.status == 200 && sent.json["method"] as? String == "sms" && sent.json["mfaEventId"] as? String == "c-1" && sent.json["expiresAt"] is String)
            #expect(try await send("c-1", "otp").status == 400, "TOTP codes are not sent")
            #expect(try await send("unknown-1", "email").status == 404)
            let confirm = try await client.send("POST", "/v1/users/dana/factors/email/confirm", template: "/v1/users/{id}/factors/email/confirm",
                                                key: TestKeys.enroll, body: Data(#"{"code":"123456"}"#.utf8))
            #expect(confirm.status == 200 && confirm.json["factor"] as? String == "email")
        }
    }

    /// The face provider's callback: no API key, the signature is the credential.
    @Test func faceVerdictsNeedTheProvidersSignatureAndAnswerLikeAVerification() async throws {
        try await withServer { client in
            func verdict(_ body: String, secret: [UInt8] = TestBackend.faceSecret, skew: Int64 = 0) async throws -> HTTPReply {
                let t = Int64(Date().timeIntervalSince1970) + skew
                return try await client.send("POST", "/v1/face/verdicts", template: "/v1/face/verdicts", body: Data(body.utf8),
                                             headers: ["Camfa-Signature": CodeSender.signature(body: Data(body.utf8), secret: secret, unixSeconds: t)])
            }
            let match = #"{"user":"dana","code":"4711471147","mfaEventId":"c-1","verdict":"match"}"#
            let passed = try await verdict(match)
            #expect(passed.status == 200 && passed.json["method"] as? String == "face" && passed.json["mfaToken"] is String, "\(passed.json)")
            let confirmed = try await verdict(#"{"user":"dana","code":"4711471147","verdict":"match"}"#)
            #expect(confirmed.status == 200 && confirmed.json["factor"] as? String == "face" && confirmed.json["confirmed"] as? Bool == true)
            let mismatch = try await verdict(#"{"user":"dana","code":"111111","mfaEventId":"c-1","verdict":"no-match"}"#)
            #expect(mismatch.status == 422 && mismatch.error["code"] as? String == "wrong-code")
            for refused in [try await verdict(match, secret: Array("another-secret-0123456789".utf8)), try await verdict(match, skew: -301),
                            try await client.send("POST", "/v1/face/verdicts", template: "/v1/face/verdicts", body: Data(match.utf8))] {
                #expect(refused.status == 401 && refused.error["code"] as? String == "bad-signature", "\(refused.json)")
            }
            let badBody = try await verdict(#"{"user":"dana","code":"1","verdict":"maybe"}"#)
            #expect(badBody.status == 400 && badBody.error["field"] as? String == "verdict")
            #expect(try await client.send("POST", "/v1/users/dana/factors/face/confirm", template: nil, key: TestKeys.enroll,
                                          body: Data(#"{"code":"123456"}"#.utf8)).status == 404, "a face factor is confirmed by its provider only")
        }
    }

    @Test func malformedBodiesAre400NamingTheField() async throws {
        try await withServer { client in
            let wrongType = try await client.send("POST", "/v1/evaluate", template: "/v1/evaluate", key: TestKeys.evaluate,
                                                  body: Data(#"{"originalIdentity":"alice","requestDate":"yesterday"}"#.utf8))
            #expect(wrongType.status == 400)
            #expect(wrongType.error["code"] as? String == "invalid")
            #expect(wrongType.error["field"] as? String == "requestDate")
            let truncated = try await client.send("POST", "/v1/evaluate", template: "/v1/evaluate", key: TestKeys.evaluate,
                                                  body: Data(#"{"originalIdentity":"#.utf8))
            #expect(truncated.status == 400)
            let noOutcome = try await client.send("POST", "/v1/mfa-results", template: "/v1/mfa-results", key: TestKeys.results,
                                                  body: Data(#"{"mfaEventId":"c-1","user":"u","method":"otp"}"#.utf8))
            #expect(noOutcome.status == 400)
            #expect(noOutcome.error["field"] as? String == "outcome")
        }
    }

    @Test func aTenMegabyteBodyIs413() async throws {
        try await withServer { client in
            var big = Data(#"{"originalIdentity":"alice","requestDate":1,"custom":{"pad":""#.utf8)
            big.append(Data(repeating: UInt8(ascii: "x"), count: 10 << 20))
            big.append(Data(#""}}"#.utf8))
            for (method, path, template, scope, _) in keyedEndpoints where method == "POST" && scope != .admin {
                let r = try await client.send(method, path, template: template, key: TestKeys.key(for: scope), body: big)
                #expect(r.status == 413, "\(path)")
                #expect(r.error["code"] as? String == "too-large")
            }
            let chunked = try await client.send("POST", "/v1/evaluate", template: "/v1/evaluate", key: TestKeys.evaluate, body: big, streamed: true)
            #expect(chunked.status == 413)
            #expect(chunked.error["code"] as? String == "too-large")
            // Under the limit, a chunked body is read whole.
            let small = try await client.send("POST", "/v1/evaluate", template: "/v1/evaluate", key: TestKeys.evaluate,
                                              body: keyedEndpoints[0].4, streamed: true)
            #expect(small.status == 200)
        }
    }

    @Test func readyzFollowsHealthAndTheLagRule() async throws {
        let backend = TestBackend(ready: false)
        try await withServer({ $0.openEndpoints = ["/healthz", "/readyz"]; $0.readinessMaxLag = 100 }, backend: backend) { client in
            let starting = try await client.send("GET", "/readyz", template: "/readyz")
            #expect(starting.status == 503)
            #expect(starting.json["ready"] as? Bool == false && starting.json["reason"] is String)
            backend.health.setStarted(true)
            backend.health.assignmentHandled()
            backend.health.setConsumerLag(0, 100)
            let ready = try await client.send("GET", "/readyz", template: "/readyz")
            #expect(ready.status == 200 && ready.json["ready"] as? Bool == true)
            backend.health.setConsumerLag(1, 101)
            let lagging = try await client.send("GET", "/readyz", template: "/readyz")
            #expect(lagging.status == 503)
            #expect((lagging.json["reason"] as? String)?.contains("partition 1") == true)
        }
    }
}
