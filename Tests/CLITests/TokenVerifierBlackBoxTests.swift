import CAMFAClient
import CAMFATokens
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import CAMFATestSupport
import Testing

extension ClientBlackBoxTests {
    /// Issue 26 item 1 (verifyToken): a service verifies mfaTokens locally against the JWKS the
    /// real daemon publishes, from keys made by `camfa token-key`, across a key rotation.
    @Suite struct ClientTokenVerifierBlackBoxTests {
        static func newKey(_ dir: TemporaryDirectory, _ name: String) throws -> (kid: String, pem: String, path: String) {
            let path = dir.path + "/\(name).pem"
            let r = try runCamfa(["token-key", "--out", path, "--kid", name])
            #expect(r.status == 0, "\(r.stderr)")
            return (name, try String(contentsOfFile: path, encoding: .utf8), path)
        }

        static func daemon(_ broker: BlackBox.Broker, port: Int, keys: [(kid: String, pem: String, path: String)]) throws -> BlackBox.Daemon {
            try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "statusclient", group: "tokens-\(UUID().uuidString)", extraConfig: """
                http:
                  address: 127.0.0.1:\(port)
                tokens:
                  issuer: urn:camfa:bb
                  keys:
                \(keys.map { "    - {kid: \($0.kid), privateKey: \($0.path)}" }.joined(separator: "\n"))
                """)
        }

        static func waitForJWKS(_ port: Int) async -> Bool {
            for _ in 0..<80 {
                if let (_, r) = try? await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/.well-known/jwks.json")!),
                   (r as? HTTPURLResponse)?.statusCode == 200 { return true }
                try? await Task.sleep(nanoseconds: 250_000_000)
            }
            return false
        }

        @Test func tokensVerifyLocallyAcrossAKeyRotation() async throws {
            guard BlackBox.requireKcat() else { return }
            let broker = try BlackBox.broker()
            let dir = try TemporaryDirectory("camfa-token-keys")
            let old = try Self.newKey(dir, "k-old"), new = try Self.newKey(dir, "k-new")
            let port = HTTPBlackBoxTests.freePort()
            var daemon = try Self.daemon(broker, port: port, keys: [old])
            #expect(await Self.waitForJWKS(port), "\(daemon.log.suffix(2000))")
            let verifier = TokenVerifier(jwksURL: URL(string: "http://127.0.0.1:\(port)/.well-known/jwks.json")!, issuer: "urn:camfa:bb")
            let now = Int64(Date().timeIntervalSince1970)
            let signer = try await MFATokens(keys: [try MFATokens.SigningKey(kid: old.kid, pem: old.pem)], issuer: "urn:camfa:bb", lifetime: 300)
            let token = try await signer.issue(user: "alice", app: "portal", mfaEventId: "e-1", method: "email", jti: UUID().uuidString, now: now)
            guard case .valid(let v) = await verifier.verifyToken(token, audience: "portal") else {
                Issue.record("a token of the daemon's key did not verify")
                return
            }
            #expect(v.originalIdentity == "alice" && v.mfaEventId == "e-1" && v.method == "email" && v.app == "portal")
            #expect(await verifier.verifyToken(token, audience: "crm") == .invalid(reason: "audience: not issued for 'crm'"))
            // Another key under the same kid, and another issuer.
            let forger = try await MFATokens(keys: [.generated(kid: old.kid)], issuer: "urn:camfa:bb", lifetime: 300)
            let forged = try await forger.issue(user: "mallory", app: "portal", mfaEventId: "e-1", method: "otp", jti: "j", now: now)
            if case .valid = await verifier.verifyToken(forged) { Issue.record("a forged token verified") }
            let elsewhere = try await MFATokens(keys: [try MFATokens.SigningKey(kid: old.kid, pem: old.pem)], issuer: "urn:other", lifetime: 300)
            let foreign = try await elsewhere.issue(user: "alice", app: "portal", mfaEventId: "e-1", method: "otp", jti: "j2", now: now)
            if case .valid = await verifier.verifyToken(foreign) { Issue.record("another issuer's token verified") }

            // Rotation: the new key signs, the old one still verifies; the verifier learns the
            // new kid from the daemon without a restart.
            #expect(daemon.stop() == 0)
            daemon = try Self.daemon(broker, port: port, keys: [new, old])
            defer { _ = daemon.stop() }
            #expect(await Self.waitForJWKS(port), "\(daemon.log.suffix(2000))")
            let rotated = try await MFATokens(keys: [try MFATokens.SigningKey(kid: new.kid, pem: new.pem)], issuer: "urn:camfa:bb", lifetime: 300)
            let fresh = try await rotated.issue(user: "bob", app: "crm", mfaEventId: "e-2", method: "otp", jti: UUID().uuidString, now: now)
            guard case .valid(let b) = await verifier.verifyToken(fresh, audience: "crm") else {
                Issue.record("a token of the new key did not verify")
                return
            }
            #expect(b.originalIdentity == "bob")
            if case .invalid(let reason) = await verifier.verifyToken(token, audience: "portal") { Issue.record("the old key's token: \(reason)") }
        }
    }
}
