import CAMFADaemon
import CAMFAServer
import CAMFATestSupport
import CAMFATokens
import Foundation
import Testing

/// `GET /.well-known/jwks.json` and `POST /v1/tokens/verify` (issue 25 item 3), and where the
/// daemon's signing keys come from (`TokenKeyFiles`).
@Suite struct TokenRoutesTests {
    static let now: Int64 = 1_767_225_600

    static func verifyBody(_ token: String, audience: String? = nil) -> Data {
        var o: [String: Any] = ["mfaToken": token]
        if let audience { o["audience"] = audience }
        return try! JSONSerialization.data(withJSONObject: o)
    }

    @Test func theServerVerifiesItsTokensAndRefusesOthers() async throws {
        let tokens = try await TestTokens.make()
        let jwt = try await tokens.issue(user: "alice", app: "portal", mfaEventId: "e-1", method: "email", acr: "mfa", jti: "j-1", now: Self.now)
        let clock = ManualClock(Self.now * 1000 + 10_000)
        try await withServer(tokens: tokens, clock: { clock.now }) { client in
            let path = "/v1/tokens/verify", template = "/v1/tokens/verify"
            let ok = try await client.send("POST", path, template: template, key: TestKeys.status, body: Self.verifyBody(jwt, audience: "portal"))
            #expect(ok.status == 200)
            #expect(ok.json["valid"] as? Bool == true && ok.json["originalIdentity"] as? String == "alice", "\(ok.text)")
            #expect(ok.json["mfaEventId"] as? String == "e-1" && ok.json["method"] as? String == "email" && ok.json["app"] as? String == "portal")
            #expect(ok.json["authTime"] as? String == "2026-01-01T00:00:00.000Z")
            #expect(ok.json["expiresAt"] as? String == "2026-01-01T00:05:00.000Z")
            #expect(ok.json["acr"] as? String == "mfa")

            // Someone else's app, a forged payload, and the same token once expired.
            let crm = try await client.send("POST", path, template: template, key: TestKeys.status, body: Self.verifyBody(jwt, audience: "crm"))
            #expect(crm.json["valid"] as? Bool == false && (crm.json["reason"] as? String ?? "").contains("audience"))
            let parts = jwt.split(separator: ".").map(String.init)
            let payload = String(decoding: Data(base64URL: parts[1])!, as: UTF8.self).replacingOccurrences(of: "alice", with: "mallory")
            let forged = parts[0] + "." + Data(payload.utf8).base64URL + "." + parts[2]
            let f = try await client.send("POST", path, template: template, key: TestKeys.status, body: Self.verifyBody(forged))
            #expect(f.status == 200 && f.json["valid"] as? Bool == false && f.json["originalIdentity"] == nil)
            clock.now = (Self.now + 300) * 1000
            let late = try await client.send("POST", path, template: template, key: TestKeys.status, body: Self.verifyBody(jwt))
            #expect(late.json["valid"] as? Bool == false && late.json["reason"] as? String == "expired")

            // The scope, and bodies that are not a verify request.
            let noKey = try await client.send("POST", path, template: template, body: Self.verifyBody(jwt))
            #expect(noKey.status == 401)
            let wrongScope = try await client.send("POST", path, template: template, key: TestKeys.results, body: Self.verifyBody(jwt))
            #expect(wrongScope.status == 403)
            let empty = try await client.send("POST", path, template: template, key: TestKeys.status, body: Data(#"{"mfaToken":""}"#.utf8))
            #expect(empty.status == 400 && empty.error["field"] as? String == "mfaToken")
            let extra = try await client.send("POST", path, template: template, key: TestKeys.status, body: Data(#"{"mfaToken":"x","user":"alice"}"#.utf8))
            #expect(extra.status == 400 && extra.error["field"] as? String == "user")
        }
    }

    /// PyJWT fetches the JWKS from the running server (no key: the endpoint is open) and
    /// verifies a token with it; the kid of an unnamed key is its RFC 7638 thumbprint,
    /// recomputed in Python from the published coordinates.
    @Test func pyJWTVerifiesThroughTheServedJWKS() async throws {
        let unnamed = MFATokens.SigningKey.generated(kid: "-")
        let key = MFATokens.SigningKey(kid: unnamed.thumbprint, key: unnamed.key)
        let tokens = try await TestTokens.make(keys: [key, .generated(kid: "old")])
        let jwt = try await tokens.issue(user: "carol", app: "portal", mfaEventId: "e-9", method: "otp", jti: "j-9",
                                         now: Int64(Date().timeIntervalSince1970))
        try await withServer(tokens: tokens) { client in
            let jwks = try await client.send("GET", "/.well-known/jwks.json", template: "/.well-known/jwks.json")
            #expect(jwks.status == 200 && jwks.header("Content-Type") == "application/jwk-set+json")
            let script = """
                import base64, hashlib, json, sys, jwt
                url, token = sys.argv[1], sys.argv[2]
                signing = jwt.PyJWKClient(url).get_signing_key_from_jwt(token)
                claims = jwt.decode(token, signing.key, algorithms=["ES256"], audience="portal", issuer="urn:camfa:test")
                k = next(k for k in json.load(__import__("urllib.request").request.urlopen(url))["keys"] if k["kid"] == signing.key_id)
                canonical = json.dumps({"crv": k["crv"], "kty": k["kty"], "x": k["x"], "y": k["y"]}, separators=(",", ":"), sort_keys=True)
                thumb = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
                print(json.dumps({"sub": claims["sub"], "amr": claims["amr"], "kid": signing.key_id, "thumbprint": thumb}))
                """
            guard let r = try await runToolOffPool("python3", ["-c", script, client.base + "/.well-known/jwks.json", jwt]),
                  !r.stderr.contains("No module named") else {
                #expect(!isCI, "python3 with PyJWT and cryptography is needed (scripts/install-deps.sh installs them)")
                return
            }
            #expect(r.status == 0, "\(r.stderr)")
            let out = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            #expect(out["sub"] as? String == "carol" && out["amr"] as? [String] == ["otp"])
            #expect(out["kid"] as? String == key.kid && out["thumbprint"] as? String == key.kid)
        }
    }

    @Test func aStateDirectoryKeyIsCreatedOnceAndKeptPrivate() async throws {
        let dir = try TemporaryDirectory()
        var c = Configuration()
        c.stateDir = dir.path + "/state"
        let first = try TokenKeyFiles.load(c, environment: [:])
        let again = try TokenKeyFiles.load(c, environment: [:])
        #expect(first.created && !again.created)
        #expect(first.keys.map(\.kid) == again.keys.map(\.kid) && first.keys[0].kid == first.keys[0].thumbprint)
        let mode = try FileManager.default.attributesOfItem(atPath: c.stateDir + "/token-key.pem")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        // A systemd credential wins over the state directory; configured keys win over both.
        let credentials = dir.path + "/credentials"
        try FileManager.default.createDirectory(atPath: credentials, withIntermediateDirectories: true)
        let pem = MFATokens.SigningKey.generated(kid: "-").pem
        try pem.write(toFile: credentials + "/camfa-token-key", atomically: true, encoding: .utf8)
        let fromCredential = try TokenKeyFiles.load(c, environment: ["CREDENTIALS_DIRECTORY": credentials])
        #expect(fromCredential.origin.contains("camfa-token-key") && fromCredential.keys[0].kid != first.keys[0].kid)
        c.tokens.keys = [.init(kid: "k-2026", privateKey: credentials + "/camfa-token-key"), .init(kid: "k-old", privateKey: c.stateDir + "/token-key.pem")]
        let configured = try TokenKeyFiles.load(c, environment: ["CREDENTIALS_DIRECTORY": credentials])
        #expect(configured.keys.map(\.kid) == ["k-2026", "k-old"])
    }

    @Test func aBadKeyFileNamesTheFieldNotTheKey() throws {
        let dir = try TemporaryDirectory()
        let file = dir.path + "/broken.pem"
        try "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----\n".write(toFile: file, atomically: true, encoding: .utf8)
        var c = Configuration()
        c.tokens.keys = [.init(kid: "k1", privateKey: file)]
        #expect { try TokenKeyFiles.load(c, environment: [:]) } throws: { e in
            let text = "\(e)"
            return text.contains("tokens.keys[0].privateKey") && text.contains("'k1'") && !text.contains("c2VjcmV0")
        }
        c.tokens.keys = [.init(kid: "k1", privateKey: dir.path + "/missing.pem")]
        #expect { try TokenKeyFiles.load(c, environment: [:]) } throws: { "\($0)".contains("cannot read") }
    }

    @Test func theTokensSectionIsValidated() throws {
        let good = try Configuration.parse("""
            tokens:
              issuer: https://mfa.example.com
              lifetime: 2m
              keys:
                - {kid: new, privateKey: /etc/camfa/new.pem}
                - {kid: old, privateKey: credential:camfa-old-key}
            """, file: "c.yaml")
        #expect(good.tokens.issuer == "https://mfa.example.com" && good.tokens.lifetime == 120_000)
        #expect(good.tokens.keys.map(\.kid) == ["new", "old"])
        let bad = """
            tokens:
              lifetime: 2d
              keys:
                - {kid: a, privateKey: /a.pem}
                - {kid: a, privateKey: /b.pem}
                - {privateKey: /c.pem}
                - {kid: d, file: /d.pem}
              audience: x
            """
        #expect { try Configuration.parse(bad, file: "c.yaml") } throws: { e in
            let text = "\(e)"
            return ["c.yaml:2: tokens.lifetime", "tokens.keys[1].kid: duplicate kid 'a'", "tokens.keys[2].kid: is required",
                    "tokens.keys[3].file: unknown key", "tokens.audience: unknown key"].allSatisfy { text.contains($0) }
        }
    }
}

/// A settable clock for expiry (epoch ms).
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int64
    init(_ start: Int64) { value = start }
    var now: Int64 {
        get { lock.withLock { value } }
        set { lock.withLock { value = newValue } }
    }
}
