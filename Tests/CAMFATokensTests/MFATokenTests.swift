import CAMFATestSupport
import CAMFATokens
import Foundation
import Testing

/// The mfaToken (issue 25 item 3): ES256 through jwt-kit, checked here for what a verifier
/// must refuse, and by an independent library (PyJWT) against the published JWKS.
@Suite struct MFATokenTests {
    static let now: Int64 = 1_767_225_600

    static func tokens(_ keys: [MFATokens.SigningKey], lifetime: Int64 = 300) async throws -> MFATokens {
        try await MFATokens(keys: keys, issuer: "urn:camfa", lifetime: lifetime)
    }

    @Test func aTokenVerifiesWithItsClaimsAndExpires() async throws {
        let t = try await Self.tokens([.generated(kid: "k1")])
        let jwt = try await t.issue(user: "alice", app: "portal", mfaEventId: "e-1", method: "email", jti: "j-1", now: Self.now)
        guard case .valid(let c) = await t.verify(jwt, audience: "portal", now: Self.now + 299) else {
            Issue.record("a fresh token did not verify")
            return
        }
        #expect(c.sub.value == "alice" && c.iss.value == "urn:camfa" && c.aud.value == ["portal"] && c.jti.value == "j-1")
        #expect(c.amr == ["mail"] && c.mfaEventId == "e-1")
        #expect(Int64(c.exp.value.timeIntervalSince1970) - Int64(c.iat.value.timeIntervalSince1970) == 300)
        #expect(await t.verify(jwt, now: Self.now + 300) == .invalid(reason: "expired"))
        #expect(await t.verify(jwt, audience: "crm", now: Self.now) == .invalid(reason: "audience: not issued for 'crm'"))
    }

    @Test func forgedAndForeignTokensAreRefused() async throws {
        let t = try await Self.tokens([.generated(kid: "k1")])
        let jwt = try await t.issue(user: "alice", app: "portal", mfaEventId: "e-1", method: "otp", jti: "j-2", now: Self.now)
        let parts = jwt.split(separator: ".").map(String.init)
        #expect(parts.count == 3)
        // Another user in the payload, the signature kept.
        let payload = String(decoding: Data(base64URL: parts[1])!, as: UTF8.self).replacingOccurrences(of: "alice", with: "mallory")
        let forged = parts[0] + "." + Data(payload.utf8).base64URL + "." + parts[2]
        if case .valid = await t.verify(forged, now: Self.now) { Issue.record("a forged payload verified") }
        // alg none, and a token from another issuer's key with the same kid.
        let none = #"{"alg":"none","typ":"JWT","kid":"k1"}"#
        if case .valid = await t.verify(Data(none.utf8).base64URL + "." + parts[1] + ".", now: Self.now) { Issue.record("alg none verified") }
        let other = try await Self.tokens([.generated(kid: "k1")])
        let foreign = try await other.issue(user: "alice", app: "portal", mfaEventId: "e-1", method: "otp", jti: "j-3", now: Self.now)
        if case .valid = await t.verify(foreign, now: Self.now) { Issue.record("another key's token verified") }
        if case .valid = await t.verify("not a token", now: Self.now) { Issue.record("garbage verified") }
    }

    @Test func rotationSignsWithTheFirstKeyAndStillVerifiesTheOld() async throws {
        let old = MFATokens.SigningKey.generated(kid: "2026-01")
        let before = try await Self.tokens([old])
        let jwt = try await before.issue(user: "bob", app: "crm", mfaEventId: "e-2", method: "face", jti: "j-4", now: Self.now)
        let next = MFATokens.SigningKey.generated(kid: "2026-02")
        let after = try await Self.tokens([next, try MFATokens.SigningKey(kid: "2026-01", pem: old.pem)])
        if case .invalid(let reason) = await after.verify(jwt, now: Self.now) { Issue.record("the old key's token: \(reason)") }
        let fresh = try await after.issue(user: "bob", app: "crm", mfaEventId: "e-3", method: "sms", jti: "j-5", now: Self.now)
        let header = String(decoding: Data(base64URL: String(fresh.split(separator: ".")[0]))!, as: UTF8.self)
        #expect(header.contains(#""kid":"2026-02""#) && header.contains(#""alg":"ES256""#), "\(header)")
        #expect(after.jwks.contains(#""kid":"2026-02""#) && after.jwks.contains(#""kid":"2026-01""#))
        do {
            _ = try MFATokens.SigningKey(kid: "bad", pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
            Issue.record("a bad PEM was accepted")
        } catch {
            #expect(error.code == .badKey && error.message.contains("'bad'"))
        }
    }

    /// An independent verifier: PyJWT with the JWKS as published (skipped without it, a
    /// failure under CI=true).
    @Test func pyJWTVerifiesAgainstTheJWKS() async throws {
        let t = try await Self.tokens([.generated(kid: "k-py"), .generated(kid: "k-old")], lifetime: 10 * 365 * 86_400)
        let jwt = try await t.issue(user: "carol", app: "portal", mfaEventId: "e-9", method: "otp", acr: "mfa", jti: "j-9",
                                    now: Int64(Date().timeIntervalSince1970))
        let script = """
            import json, sys, jwt
            jwks, token = sys.stdin.read().split("\\n")[:2]
            keys = jwt.PyJWKSet.from_json(jwks)
            kid = jwt.get_unverified_header(token)["kid"]
            key = next(k for k in keys.keys if k.key_id == kid)
            claims = jwt.decode(token, key.key, algorithms=["ES256"], audience="portal", issuer="urn:camfa")
            print(json.dumps(claims, sort_keys=True))
            """
        guard let r = try runTool("python3", ["-c", script], stdin: Data((t.jwks + "\n" + jwt + "\n").utf8)),
              !r.stderr.contains("No module named") else {
            #expect(!isCI, "python3 with PyJWT and cryptography is needed (scripts/install-deps.sh installs them)")
            return
        }
        #expect(r.status == 0, "\(r.stderr)")
        let claims = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(claims["sub"] as? String == "carol" && claims["mfaEventId"] as? String == "e-9" && claims["acr"] as? String == "mfa")
        #expect(claims["amr"] as? [String] == ["otp"])
    }
}
