import Foundation
import Testing
import CAMFATestSupport

/// Issue 25's email and SMS acceptance with the real `camfa run`: a real SMTP server on
/// loopback (aiosmtpd, requiring STARTTLS and AUTH) receives the codes, a webhook receiver
/// checks each request's HMAC signature with its own Python code; the test reads the codes
/// from there, as a user would from their inbox or phone, confirms the factors, answers
/// challenges with them, and PyJWT checks the mfaToken's `amr`. Every response is checked
/// against schemas/openapi.yaml. `scripts/code-receivers.py` runs both providers.
@Suite(.serialized) struct CodeDeliveryBlackBoxTests {
    static let key = "camfa-test-codes-0123456789abcdef"

    /// The extranet policy behind an http flow offering email, sms and face.
    static func policies() throws -> TemporaryDirectory {
        try HTTPDaemon.extranetPolicies(flows: """
        flow: api_login
        trigger: http
        apps: global
        policies: [extranet]
        cooldown: 15m
        expiry: 10m
        branches:
          - when: policies.extranet.hit
            mfa: [email, sms, face]
        """)
    }

    /// The six-digit code in the newest file of `prefix` beyond the first `seen`.
    static func nextCode(_ dir: String, prefix: String, seen: Int) throws -> (code: String, text: String)? {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            let files = (try FileManager.default.contentsOfDirectory(atPath: dir)).filter { $0.hasPrefix(prefix + "-") && !$0.hasSuffix(".tmp") }
                .sorted { Int($0.dropFirst(prefix.count + 1).prefix { $0.isNumber }) ?? 0 < Int($1.dropFirst(prefix.count + 1).prefix { $0.isNumber }) ?? 0 }
            if files.count > seen {
                let text = try String(contentsOfFile: dir + "/" + files[seen], encoding: .utf8)
                let regex = try NSRegularExpression(pattern: "code is ([0-9]{6})")
                guard let m = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)), let r = Range(m.range(at: 1), in: text) else {
                    return (code: "", text: text)
                }
                return (String(text[r]), text)
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return nil
    }

    @Test func emailAndSMSCodesArriveConfirmFactorsAndPassChallenges() throws {
        guard BlackBox.requireKcat() else { return }
        let work = try TemporaryDirectory("camfa-codes")
        guard let (cert, certKey) = try selfSignedCertificate(in: URL(fileURLWithPath: work.path)) else {
            #expect(!isCI, "the openssl CLI is needed")
            return
        }
        let out = work.path + "/received"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let secretFile = work.path + "/hook.secret", passwordFile = work.path + "/smtp.password"
        try "hook-secret-0123456789abcdef\n".write(toFile: secretFile, atomically: true, encoding: .utf8)
        try "smtp-pass-4711\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        let smtpPort = HTTPBlackBoxTests.freePort(), hookPort = HTTPBlackBoxTests.freePort()

        let receivers = Process()
        receivers.executableURL = URL(fileURLWithPath: try #require(which("python3")))
        receivers.arguments = [packageRoot.appendingPathComponent("scripts/code-receivers.py").path, out, "\(smtpPort)", "\(hookPort)",
                               cert, certKey, "camfa", "smtp-pass-4711", secretFile]
        let receiverErrors = Pipe()
        receivers.standardError = receiverErrors
        receivers.standardOutput = FileHandle.nullDevice
        try receivers.run()
        defer { kill(receivers.processIdentifier, SIGKILL); receivers.waitUntilExit() }
        var ready = false
        for _ in 0..<100 where !ready && receivers.isRunning {
            ready = FileManager.default.fileExists(atPath: out + "/ready")
            if !ready { Thread.sleep(forTimeInterval: 0.1) }
        }
        if !ready {
            receivers.waitUntilExit()
            let text = String(decoding: receiverErrors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(!isCI && receivers.terminationStatus == 3, "the code receivers did not start: \(text)")
            return
        }

        let broker = try BlackBox.broker()
        let policies = try Self.policies()
        let server = try HTTPDaemon(broker: broker, name: "codes", key: Self.key, scopes: ["evaluate", "status", "enroll", "verify"], config: """
            tokens:
              issuer: urn:camfa:codes
            factors:
              sendsPerChallenge: 2
              email:
                host: 127.0.0.1
                port: \(smtpPort)
                username: camfa
                passwordFile: \(passwordFile)
                caFile: \(cert)
                from: "camfa <mfa@example.com>"
              sms:
                url: http://127.0.0.1:\(hookPort)/sms
                secretFile: \(secretFile)
              face:
                url: http://127.0.0.1:\(hookPort)/face
                secretFile: \(secretFile)
            """, policies: policies.path)
        defer { server.stop() }
        let base = server.base, daemon = server.daemon, rec = server.recorder
        func call(_ method: String, _ path: String, template: String, body: String? = nil) throws -> HTTPBlackBoxTests.Response {
            try server.call(method, path, template: template, body: body)
        }
        func text(_ r: HTTPBlackBoxTests.Response) -> String { r.text }
        func errorCode(_ r: HTTPBlackBoxTests.Response) -> String? { r.errorCode }
        try server.waitUntilReady()
        func challenge(_ user: String) throws -> String { try server.apiChallenge(user) }
        func verify(_ id: String, _ user: String, _ method: String, _ code: String) throws -> HTTPBlackBoxTests.Response {
            try call("POST", "/v1/challenges/\(id)/verify", template: "/v1/challenges/{mfaEventId}/verify",
                     body: #"{"user":"\#(user)","method":"\#(method)","code":"\#(code)"}"#)
        }
        func send(_ id: String, _ user: String, _ method: String) throws -> HTTPBlackBoxTests.Response {
            try call("POST", "/v1/challenges/\(id)/send", template: "/v1/challenges/{mfaEventId}/send", body: #"{"user":"\#(user)","method":"\#(method)"}"#)
        }

        // Email: the enrolment sends a code over STARTTLS with AUTH; it confirms the factor.
        let enrolled = try call("POST", "/v1/users/erin/factors/email", template: "/v1/users/{id}/factors/email", body: #"{"address":"erin@example.com"}"#)
        #expect(enrolled.status == 200 && enrolled.json["sentTo"] as? String == "e***@example.com", "\(text(enrolled))\n\(daemon.log.suffix(1500))")
        let first = try #require(try Self.nextCode(out, prefix: "mail", seen: 0), "no mail arrived; log:\n\(daemon.log.suffix(1500))")
        #expect(first.text.contains("X-Test-TLS: yes") && first.text.contains("X-Test-Login: camfa") && first.text.contains("X-Test-Rcpt: erin@example.com"),
                "STARTTLS and AUTH before the message: \(first.text)")
        #expect(first.text.contains("From: camfa <mfa@example.com>") && first.text.contains("Subject: Your sign-in code"))
        let unconfirmed = try challenge("erin")
        #expect(errorCode(try send(unconfirmed, "erin", "email")) == "no-factor", "an unconfirmed address is sent no challenge code")
        let wrongConfirm = try call("POST", "/v1/users/erin/factors/email/confirm", template: "/v1/users/{id}/factors/email/confirm",
                                    body: #"{"code":"\#(first.code == "000000" ? "111111" : "000000")"}"#)
        #expect(wrongConfirm.status == 422)
        let confirmed = try call("POST", "/v1/users/erin/factors/email/confirm", template: "/v1/users/{id}/factors/email/confirm",
                                 body: #"{"code":"\#(first.code)"}"#)
        #expect(confirmed.status == 200 && confirmed.json["factor"] as? String == "email", "\(text(confirmed))")

        // A challenge: send, read the mail, verify, and the token says amr mail.
        let id = try challenge("erin")
        #expect(errorCode(try verify(id, "erin", "email", first.code)) == "no-code", "the confirmation's code answers no challenge")
        let sent = try send(id, "erin", "email")
        #expect(sent.status == 200 && sent.json["mfaEventId"] as? String == id && sent.json["expiresAt"] is String, "\(text(sent))")
        let mail = try #require(try Self.nextCode(out, prefix: "mail", seen: 1), "no second mail")
        let passed = try verify(id, "erin", "email", mail.code)
        #expect(passed.status == 200, "\(text(passed))")
        #expect(try verify(id, "erin", "email", mail.code).status == 404, "single use: the challenge is cleared")
        let token = passed.json["mfaToken"] as? String ?? ""
        let script = """
            import json, sys, jwt
            key = jwt.PyJWKClient(sys.argv[1]).get_signing_key_from_jwt(sys.argv[2])
            c = jwt.decode(sys.argv[2], key.key, algorithms=["ES256"], audience="crm", issuer="urn:camfa:codes")
            print(json.dumps({"sub": c["sub"], "amr": c["amr"]}))
            """
        if let r = try runTool("python3", ["-c", script, base + "/.well-known/jwks.json", token]), !r.stderr.contains("No module named") {
            let claims = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            #expect(claims?["sub"] as? String == "erin" && claims?["amr"] as? [String] == ["mail"], "\(r.stdout)\(r.stderr)")
        } else {
            #expect(!isCI, "python3 with PyJWT is needed")
        }

        // SMS: the webhook gets a request whose signature its own code verifies.
        let sms = try call("POST", "/v1/users/finn/factors/sms", template: "/v1/users/{id}/factors/sms", body: #"{"number":"+14155550123"}"#)
        #expect(sms.status == 200 && sms.json["sentTo"] as? String == "+*******0123", "\(text(sms))")
        let hook = try #require(try Self.nextCode(out, prefix: "hook", seen: 0), "no webhook request arrived; log:\n\(daemon.log.suffix(1500))")
        let body = try #require(try JSONSerialization.jsonObject(with: Data(hook.text.utf8)) as? [String: Any])
        #expect(body["to"] as? String == "+14155550123" && body["purpose"] as? String == "confirmation" && body["code"] as? String == hook.code)
        #expect(!FileManager.default.fileExists(atPath: out + "/bad-1.json"), "every webhook request was signed right")
        #expect(try call("POST", "/v1/users/finn/factors/sms/confirm", template: "/v1/users/{id}/factors/sms/confirm",
                         body: #"{"code":"\#(hook.code)"}"#).status == 200)
        let smsChallenge = try challenge("finn")
        #expect(try send(smsChallenge, "finn", "sms").status == 200)
        let second = try #require(try Self.nextCode(out, prefix: "hook", seen: 1))
        #expect(second.text.contains(#""mfaEventId":"\#(smsChallenge)""#) && second.text.contains(#""purpose":"challenge""#))
        #expect(try send(smsChallenge, "finn", "sms").status == 200, "a resend replaces the code")
        let third = try #require(try Self.nextCode(out, prefix: "hook", seen: 2))
        #expect(errorCode(try send(smsChallenge, "finn", "sms")) == "too-many-sends", "factors.sendsPerChallenge: 2")
        #expect(errorCode(try verify(smsChallenge, "finn", "sms", second.code)) == (second.code == third.code ? nil : "wrong-code"), "the replaced code")
        let smsPassed = try verify(smsChallenge, "finn", "sms", third.code)
        #expect(smsPassed.status == 200, "\(text(smsPassed))")

        // A provider that fails: 502, and the factor is not confirmed by anything.
        let failing = try call("POST", "/v1/users/gail/factors/sms", template: "/v1/users/{id}/factors/sms", body: #"{"number":"+14155550000"}"#)
        #expect(failing.status == 502 && errorCode(failing) == "delivery-failed", "\(text(failing))")

        // Face: the provider gets a signed request with a code, checks the user in its own
        // UI, and posts back a verdict signed with the same secret (no API key).
        func signed(_ body: String, secret: String = "hook-secret-0123456789abcdef", at t: Int64 = Int64(Date().timeIntervalSince1970)) throws -> [String: String] {
            let script = "import hmac, hashlib, sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())"
            let mac = try #require(try runTool("python3", ["-c", script, secret, "\(t).\(body)"])).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            return ["Camfa-Signature": "t=\(t),v1=\(mac)"]
        }
        func verdict(_ body: String, _ headers: [String: String]) throws -> HTTPBlackBoxTests.Response {
            let r = try HTTPBlackBoxTests.request("POST", base + "/v1/face/verdicts", body: Data(body.utf8), headers: headers)
            rec.record(method: "POST", template: "/v1/face/verdicts", r)
            return r
        }
        func faceRequest(_ seen: Int) throws -> [String: Any] {
            let file = try #require(try Self.nextCode(out, prefix: "hook", seen: seen), "no face request arrived; log:\n\(daemon.log.suffix(1500))")
            return try #require(try JSONSerialization.jsonObject(with: Data(file.text.utf8)) as? [String: Any])
        }
        let face = try call("POST", "/v1/users/hana/factors/face", template: "/v1/users/{id}/factors/face")
        #expect(face.status == 200 && face.json["factor"] as? String == "face" && face.json["sentTo"] as? String == "the face provider", "\(text(face))")
        let enrolment = try faceRequest(3)
        let faceCode = enrolment["code"] as? String ?? ""
        #expect(enrolment["channel"] as? String == "face" && enrolment["purpose"] as? String == "confirmation" && enrolment["user"] as? String == "hana"
                && faceCode.count == 10 && enrolment["callback"] as? String == "/v1/face/verdicts", "\(enrolment)")
        let confirmBody = #"{"user":"hana","code":"\#(faceCode)","verdict":"match"}"#
        // Unsigned, signed with another secret, or signed too long ago: refused before anything is read.
        for headers in [[:], try signed(confirmBody, secret: "not-the-secret-0123456789"), try signed(confirmBody, at: Int64(Date().timeIntervalSince1970) - 600)] {
            let r = try verdict(confirmBody, headers)
            #expect(r.status == 401 && errorCode(r) == "bad-signature", "\(text(r))")
        }
        // A signature time at Int64's edge must be refused, not overflow the daemon's clock check.
        let edge = try verdict(confirmBody, ["Camfa-Signature": "t=-9223372036854775808,v1=00"])
        #expect(edge.status == 401 && daemon.process.isRunning, "the daemon must survive an extreme signature time: \(edge.status)")
        let faceConfirmed = try verdict(confirmBody, try signed(confirmBody))
        #expect(faceConfirmed.status == 200 && faceConfirmed.json["confirmed"] as? Bool == true && faceConfirmed.json["factor"] as? String == "face",
                "\(text(faceConfirmed))")
        let faceChallenge = try challenge("hana")
        #expect(try send(faceChallenge, "hana", "face").status == 200)
        let check = try faceRequest(4)
        let checkCode = check["code"] as? String ?? ""
        #expect(check["purpose"] as? String == "challenge" && check["mfaEventId"] as? String == faceChallenge, "\(check)")
        let mismatch = #"{"user":"hana","code":"\#(checkCode)","mfaEventId":"\#(faceChallenge)","verdict":"no-match"}"#
        let mismatchHeaders = try signed(mismatch)
        let refused = try verdict(mismatch, mismatchHeaders)
        #expect(refused.status == 422 && errorCode(refused) == "wrong-code", "a mismatch counts as a wrong code: \(text(refused))")
        // The same signed mismatch again (captured and replayed to use up the attempts) is refused unread.
        // Four replays would use up the challenge's five attempts (factors.attemptsPerChallenge).
        for _ in 0..<4 {
            let replayed = try verdict(mismatch, mismatchHeaders)
            #expect(replayed.status == 401 && errorCode(replayed) == "bad-signature", "\(text(replayed))")
        }
        let match = #"{"user":"hana","code":"\#(checkCode)","mfaEventId":"\#(faceChallenge)","verdict":"match"}"#
        let matchHeaders = try signed(match)
        let facePassed = try verdict(match, matchHeaders)
        #expect(facePassed.status == 200 && facePassed.json["method"] as? String == "face", "\(text(facePassed))")
        let faceToken = facePassed.json["mfaToken"] as? String ?? ""
        let faceChecked = try call("POST", "/v1/tokens/verify", template: "/v1/tokens/verify", body: #"{"mfaToken":"\#(faceToken)"}"#)
        #expect(faceChecked.json["valid"] as? Bool == true && faceChecked.json["method"] as? String == "face", "\(text(faceChecked))")
        let replayed = try verdict(match, matchHeaders)
        #expect(replayed.status != 200, "a replayed verdict clears nothing: \(text(replayed))")

        // No code, address or number in the daemon's log.
        let log = daemon.log
        for secret in [first.code, mail.code, hook.code, third.code, faceCode, checkCode, "erin@example.com", "4155550123", "smtp-pass-4711"] {
            #expect(!log.contains(secret), "\(secret) in the log")
        }
        try rec.validateAgainstOpenAPI()
    }
}
