import Foundation
import Testing
import CAMFATestSupport

/// Issue 25's acceptance, tried as a new user would: the real `camfa run` with its HTTP
/// listener, curl as the client, kcat as the Kafka side, pyotp computing the codes (an
/// independent RFC 6238 implementation) and PyJWT verifying the mfaToken against the
/// published JWKS. Every response is checked against schemas/openapi.yaml.
@Suite(.serialized) struct MFALoopBlackBoxTests {
    static let key = "camfa-test-mfaloop-0123456789abcdef"

    /// The example extranet policy behind a ueba flow and an http flow, both offering otp.
    static func policies() throws -> TemporaryDirectory {
        try HTTPDaemon.extranetPolicies(flows: """
        flow: login_risk
        trigger: ueba
        apps: global
        policies: [extranet]
        cooldown: 15m
        expiry: 10m
        branches:
          - when: policies.extranet.hit
            mfa: [otp, sms]
        ---
        flow: api_login
        trigger: http
        apps: global
        policies: [extranet]
        cooldown: 15m
        expiry: 10m
        rememberDevice: 30d
        acr: urn:camfa:acr:mfa
        branches:
          - when: user.device.trusted
            allow: true
          - when: policies.extranet.hit
            mfa: [otp]
        """)
    }

    /// pyotp's codes for `secret`: at the current time and one step later.
    static func codes(_ secret: String) throws -> (now: String, next: String)? {
        let script = "import pyotp, sys, time; t = int(time.time()); s = pyotp.TOTP(sys.argv[1]); print(s.at(t), s.at(t + 30))"
        guard let r = try runTool("python3", ["-c", script, secret]), !r.stderr.contains("No module named") else {
            #expect(!isCI, "python3 with pyotp is needed (scripts/install-deps.sh installs it)")
            return nil
        }
        let parts = r.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        try #require(r.status == 0 && parts.count == 2, "pyotp: \(r.stderr)")
        return (parts[0], parts[1])
    }

    @Test func enrolChallengeVerifyAndTheTokenChecksOutWithIndependentLibraries() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let policies = try Self.policies()
        let server = try HTTPDaemon(broker: broker, name: "mfaloop", key: Self.key, scopes: ["evaluate", "status", "enroll", "verify"], config: """
            tokens:
              issuer: urn:camfa:loop
            factors:
              issuer: camfa-test
              attemptsPerChallenge: 5
              failuresPerUser: 3
              lockout: 1m
            """, policies: policies.path)
        defer { server.stop() }
        let base = server.base, daemon = server.daemon
        func call(_ method: String, _ path: String, template: String, body: String? = nil) throws -> HTTPBlackBoxTests.Response {
            try server.call(method, path, template: template, body: body)
        }
        try server.waitUntilReady()

        /// Enrols and confirms a TOTP factor; answers the secret and the code of the step after the confirmation's.
        func enrol(_ user: String) throws -> (secret: String, used: String, next: String)? {
            let e = try call("POST", "/v1/users/\(user)/factors/totp", template: "/v1/users/{id}/factors/totp")
            #expect(e.status == 200, "\(e.text)")
            let secret = try #require(e.json["secret"] as? String)
            #expect((e.json["otpauthUri"] as? String)?.hasPrefix("otpauth://totp/camfa-test:\(user)?secret=\(secret)") == true)
            guard let codes = try Self.codes(secret) else { return nil }
            let c = try call("POST", "/v1/users/\(user)/factors/totp/confirm", template: "/v1/users/{id}/factors/totp/confirm",
                             body: #"{"code":"\#(codes.now)"}"#)
            #expect(c.status == 200 && c.json["confirmed"] as? Bool == true, "\(c.text)")
            return (secret, codes.now, codes.next)
        }
        func verify(_ challenge: String, _ user: String, _ code: String) throws -> HTTPBlackBoxTests.Response {
            try call("POST", "/v1/challenges/\(challenge)/verify", template: "/v1/challenges/{mfaEventId}/verify",
                     body: #"{"user":"\#(user)","method":"otp","code":"\#(code)"}"#)
        }

        // Event flow: alice enrols, logs in from outside the office, gets an MFA event.
        guard let alice = try enrol("alice") else { return }
        let t0 = HTTPBlackBoxTests.nowMs
        try BlackBox.produce(broker.bootstrap, topic: "in.mfaloop", [(key: "alice", value: HTTPBlackBoxTests.event(user: "alice", app: "portal", ip: "203.0.113.9", time: t0))])
        let issued = try BlackBox.consume(broker.bootstrap, topic: "out.mfaloop", atLeast: 1, timeout: 30, settle: 0.5)
        let mfa = try #require(issued.compactMap { try? JSONSerialization.jsonObject(with: $0.value) as? [String: Any] }
            .first { $0["subject"] as? String == "alice" && ($0["data"] as? [String: Any])?["action"] as? String == "mfa" },
            "no MFA event for alice; log:\n\(daemon.log.suffix(2000))")
        let challenge = try #require(mfa["id"] as? String)

        // The code that confirmed the factor is used up; the next step's code passes.
        let replayed = try verify(challenge, "alice", alice.used)
        #expect(replayed.status == 422 && (replayed.json["error"] as? [String: Any])?["code"] as? String == "replayed-code",
                "\(replayed.text)")
        let passed = try verify(challenge, "alice", alice.next)
        #expect(passed.status == 200, "\(passed.text)")
        let token = try #require(passed.json["mfaToken"] as? String)
        let again = try verify(challenge, "alice", alice.next)
        #expect(again.status == 404, "a cleared challenge takes no more codes")

        // PyJWT against the published JWKS: signature, issuer, audience (the challenged app).
        let script = """
            import json, sys, jwt
            url, token = sys.argv[1], sys.argv[2]
            key = jwt.PyJWKClient(url).get_signing_key_from_jwt(token)
            c = jwt.decode(token, key.key, algorithms=["ES256"], audience="portal", issuer="urn:camfa:loop")
            print(json.dumps({"sub": c["sub"], "amr": c["amr"], "mfaEventId": c["mfaEventId"], "jti": bool(c["jti"]), "life": c["exp"] - c["iat"]}))
            """
        if let r = try runTool("python3", ["-c", script, base + "/.well-known/jwks.json", token]), !r.stderr.contains("No module named") {
            #expect(r.status == 0, "\(r.stderr)")
            let claims = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            #expect(claims["sub"] as? String == "alice" && claims["amr"] as? [String] == ["otp"] && claims["mfaEventId"] as? String == challenge)
            #expect(claims["jti"] as? Bool == true && claims["life"] as? Int == 300)
        } else {
            #expect(!isCI, "python3 with PyJWT is needed (scripts/install-deps.sh installs it)")
        }
        let status = try call("GET", "/v1/users/alice/mfa-status", template: "/v1/users/{id}/mfa-status")
        #expect(status.json["mfaVerified"] as? Bool == true, "\(status.text)")
        let aliceToken = try call("POST", "/v1/tokens/verify", template: "/v1/tokens/verify", body: #"{"mfaToken":"\#(token)"}"#)
        #expect(aliceToken.json["valid"] as? Bool == true && aliceToken.json["acr"] == nil, "login_risk sets no acr")
        // Subscribers learn it too: the challenge's `cleared` event.
        let after = try BlackBox.consume(broker.bootstrap, topic: "out.mfaloop", atLeast: 2, timeout: 30, settle: 0.5)
        let cleared = after.compactMap { try? JSONSerialization.jsonObject(with: $0.value) as? [String: Any] }
            .compactMap { $0["data"] as? [String: Any] }.filter { $0["action"] as? String == "cleared" }
        #expect(cleared.map { $0["challengeId"] as? String } == [challenge] && cleared.first?["clearedBy"] as? String == "verified")
        #expect(cleared.first?["appId"] as? String == "portal", "the cleared event names the challenged app")

        // API mode: carol passes, bob guesses and is locked out.
        guard let carol = try enrol("carol"), let bob = try enrol("bob") else { return }
        func evaluate(_ user: String, deviceToken: String? = nil) throws -> HTTPBlackBoxTests.Response {
            let custom = deviceToken.map { #","custom":{"deviceToken":"\#($0)"}"# } ?? ""
            let event = #"{"appId":"crm","requestDate":\#(HTTPBlackBoxTests.nowMs),"ip":"198.51.100.4","originalIdentity":"\#(user)","#
                + #""behaviorType":"login","behaviorResult":"success","ua":"Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"\#(custom)}"#
            return try call("POST", "/v1/evaluate", template: "/v1/evaluate", body: event)
        }
        func apiChallenge(_ user: String) throws -> String {
            let e = try evaluate(user)
            #expect(e.json["mfaRequired"] as? Bool == true, "\(e.text)")
            let decisions = e.json["decisions"] as? [[String: Any]] ?? []
            return try #require(decisions.compactMap { $0["mfaEventId"] as? String }.first)
        }
        let carolChallenge = try apiChallenge("carol")
        let carolPassed = try verify(carolChallenge, "carol", carol.next)
        #expect(carolPassed.status == 200, "\(carolPassed.text)")
        let carolToken = carolPassed.json["mfaToken"] as? String ?? ""
        let checked = try call("POST", "/v1/tokens/verify", template: "/v1/tokens/verify", body: #"{"mfaToken":"\#(carolToken)","audience":"crm"}"#)
        #expect(checked.json["valid"] as? Bool == true && checked.json["originalIdentity"] as? String == "carol"
                && checked.json["method"] as? String == "otp", "\(checked.text)")
        #expect(checked.json["acr"] as? String == "urn:camfa:acr:mfa", "the flow's acr")

        // The flow remembers devices: carol's next sign-in with the device token is allowed,
        // until the devices are revoked.
        let deviceToken = try #require(carolPassed.json["deviceToken"] as? String, "\(carolPassed.text)")
        #expect(carolPassed.json["deviceTrustedUntil"] is String)
        let trusted = try evaluate("carol", deviceToken: deviceToken)
        #expect(trusted.json["mfaRequired"] as? Bool == false, "\(trusted.text)")
        #expect(try evaluate("carol", deviceToken: "not-" + deviceToken).json["mfaRequired"] as? Bool == true, "another token")
        let revoked = try call("DELETE", "/v1/users/carol/devices", template: "/v1/users/{id}/devices")
        #expect(revoked.status == 200 && revoked.json["revoked"] as? Int == 1, "\(revoked.text)")
        #expect(try evaluate("carol", deviceToken: deviceToken).json["mfaRequired"] as? Bool == true, "challenged again after the revocation")

        let bobChallenge = try apiChallenge("bob")
        let wrong = bob.next == "000000" ? "111111" : "000000"
        var codes: [String] = []
        for _ in 0..<3 { codes.append(((try verify(bobChallenge, "bob", wrong)).json["error"] as? [String: Any])?["code"] as? String ?? "?") }
        #expect(codes == ["wrong-code", "wrong-code", "wrong-code"])
        let locked = try verify(bobChallenge, "bob", bob.next)
        #expect(locked.status == 429 && (locked.json["error"] as? [String: Any])?["code"] as? String == "locked-out",
                "the right code, during the lockout: \(locked.text)")
        let bobStatus = try call("GET", "/v1/users/bob/mfa-status", template: "/v1/users/{id}/mfa-status")
        #expect(bobStatus.json["mfaVerified"] as? Bool == false)
        #expect(!daemon.log.contains(alice.secret) && !daemon.log.contains(bob.secret), "no secret in the log")

        try server.recorder.validateAgainstOpenAPI()
    }
}
