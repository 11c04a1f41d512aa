import CLibCrypto
import Foundation
import JWTKit

/// The claims of an mfaToken, "the JWT token generated after the user's MFA" that the
/// business server verifies before it re-issues its own session (issue 25 item 3).
public struct MFATokenClaims: JWTPayload, Equatable {
    /// originalIdentity.
    public var sub: SubjectClaim
    public var iss: IssuerClaim
    /// The app the MFA was for.
    public var aud: AudienceClaim
    public var iat: IssuedAtClaim
    public var exp: ExpirationClaim
    public var jti: IDClaim
    /// RFC 8176 values: otp, sms, mail, face.
    public var amr: [String]
    public var mfaEventId: String
    public var acr: String?

    /// Nothing here: expiry, issuer and audience are checked by `MFATokens.verify` against
    /// the daemon's injected clock, not the wall clock jwt-kit would read.
    public func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Signs and verifies mfaTokens with ES256 keys; the first key signs, every key verifies
/// (rotation: add the new key first, keep the old one until its tokens have expired).
public struct MFATokens: Sendable {
    public struct SigningKey: Sendable {
        public var kid: String
        public var key: ES256PrivateKey

        public init(kid: String, key: ES256PrivateKey) {
            self.kid = kid
            self.key = key
        }

        /// A new random key (tests, `camfa` key generation).
        public static func generated(kid: String) -> SigningKey { SigningKey(kid: kid, key: ES256PrivateKey()) }

        /// RFC 7638's JWK thumbprint (base64url SHA-256 of the canonical public JWK): the
        /// `kid` of a key the operator did not name.
        public var thumbprint: String {
            guard let p = key.parameters else { return kid }
            let canonical = Array(#"{"crv":"P-256","kty":"EC","x":"\#(p.x)","y":"\#(p.y)"}"#.utf8)
            var digest = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
            canonical.withUnsafeBufferPointer { c in digest.withUnsafeMutableBufferPointer { d in _ = SHA256(c.baseAddress, c.count, d.baseAddress) } }
            return Data(digest).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }

        /// The private key as PEM (PKCS#8), for the configuration.
        public var pem: String { key.pemRepresentation }

        /// A PEM private key (PKCS#8 or SEC 1).
        public init(kid: String, pem: String) throws(TokenError) {
            do { self.init(kid: kid, key: try ES256PrivateKey(pem: pem)) } catch {
                throw TokenError(code: .badKey, message: "key '\(kid)': not a P-256 private key in PEM: \(error)")
            }
        }
    }

    public struct TokenError: Error, Sendable, Equatable, CustomStringConvertible {
        public enum Code: String, Sendable { case badKey, noKey, signing }
        public var code: Code
        public var message: String
        public var description: String { "\(code.rawValue): \(message)" }
    }

    /// What `POST /v1/tokens/verify` answers.
    public enum Verification: Sendable, Equatable {
        case valid(MFATokenClaims)
        case invalid(reason: String)
    }

    public let issuer: String
    /// Seconds from issue to expiry.
    public let lifetime: Int64
    private let keys: JWTKeyCollection
    /// nil: verify-only (built from a JWKS).
    private let signingKid: String?
    private let publicKeys: [(kid: String, x: String, y: String)]
    /// The kids this instance verifies.
    public let kids: Set<String>

    public init(keys signing: [SigningKey], issuer: String, lifetime: Int64) async throws(TokenError) {
        guard let first = signing.first else { throw TokenError(code: .noKey, message: "no signing key configured") }
        let collection = JWTKeyCollection()
        var published: [(String, String, String)] = []
        for k in signing {
            await collection.add(ecdsa: k.key, kid: JWKIdentifier(string: k.kid))
            guard let p = k.key.parameters else { throw TokenError(code: .badKey, message: "key '\(k.kid)': no public coordinates") }
            published.append((k.kid, p.x, p.y))
        }
        self.keys = collection
        self.signingKid = first.kid
        self.publicKeys = published
        self.kids = Set(signing.map(\.kid))
        self.issuer = issuer
        self.lifetime = lifetime
    }

    /// Verify-only, from a published JWKS (`GET /.well-known/jwks.json`): what a service
    /// needs to check mfaTokens locally. Only ES256 P-256 keys are taken.
    public init(jwks json: String, issuer: String) async throws(TokenError) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any],
              let list = object["keys"] as? [[String: Any]] else {
            throw TokenError(code: .badKey, message: "not a JWKS ({\"keys\": [...]})")
        }
        var published: [(String, String, String)] = []
        for k in list where k["kty"] as? String == "EC" && k["crv"] as? String == "P-256" && (k["alg"] as? String ?? "ES256") == "ES256" {
            guard let kid = k["kid"] as? String, let x = k["x"] as? String, let y = k["y"] as? String else { continue }
            published.append((kid, x, y))
        }
        let collection = JWTKeyCollection()
        for (kid, x, y) in published {
            do {
                try await collection.add(ecdsa: ES256PublicKey(parameters: (x: x, y: y)), kid: JWKIdentifier(string: kid))
            } catch {
                throw TokenError(code: .badKey, message: "key '\(kid)': not a P-256 public key: \(error)")
            }
        }
        keys = collection
        signingKid = nil
        publicKeys = published
        kids = Set(published.map(\.0))
        self.issuer = issuer
        lifetime = 0
    }

    /// The `kid` of a token's header, unverified: which key to look for.
    public static func kid(of token: String) -> String? {
        guard let header = token.split(separator: ".", omittingEmptySubsequences: false).first else { return nil }
        var b = header.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b.count % 4 != 0 { b += "=" }
        guard let data = Data(base64Encoded: b), let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return nil }
        return o["kid"] as? String
    }

    /// RFC 8176's name for a camfa method.
    public static func amr(method: String) -> String {
        switch method {
        case "email": "mail"
        default: method  // otp, sms and face are RFC 8176 names already
        }
    }

    /// camfa's method for an RFC 8176 value.
    public static func method(amr: String) -> String {
        amr == "mail" ? "email" : amr
    }

    /// A token for `user` after the challenge `mfaEventId` was passed by `method`, at `now`
    /// (epoch seconds); `jti` must be unique (a UUID).
    public func issue(user: String, app: String, mfaEventId: String, method: String, acr: String? = nil,
                      jti: String, now: Int64) async throws(TokenError) -> String {
        let claims = MFATokenClaims(
            sub: SubjectClaim(value: user), iss: IssuerClaim(value: issuer), aud: AudienceClaim(value: [app]),
            iat: IssuedAtClaim(value: Date(timeIntervalSince1970: TimeInterval(now))),
            exp: ExpirationClaim(value: Date(timeIntervalSince1970: TimeInterval(now + lifetime))),
            jti: IDClaim(value: jti), amr: [Self.amr(method: method)], mfaEventId: mfaEventId, acr: acr)
        guard let signingKid else { throw TokenError(code: .noKey, message: "verify-only: built from a JWKS") }
        do { return try await keys.sign(claims, kid: JWKIdentifier(string: signingKid)) } catch {
            throw TokenError(code: .signing, message: "\(error)")
        }
    }

    /// The signature against the configured keys (by `kid`), then issuer, expiry at `now`
    /// (epoch seconds) and, when given, the audience. Never throws: a bad token is an answer.
    public func verify(_ token: String, audience: String? = nil, now: Int64) async -> Verification {
        let claims: MFATokenClaims
        do { claims = try await keys.verify(token, as: MFATokenClaims.self) } catch {
            return .invalid(reason: "signature: the token is not one of this issuer's keys' (\(Self.short(error)))")
        }
        guard claims.iss.value == issuer else { return .invalid(reason: "issuer: '\(claims.iss.value)' is not '\(issuer)'") }
        guard Int64(claims.exp.value.timeIntervalSince1970) > now else { return .invalid(reason: "expired") }
        guard Int64(claims.iat.value.timeIntervalSince1970) <= now + 60 else { return .invalid(reason: "issued in the future") }
        if let audience, !claims.aud.value.contains(audience) { return .invalid(reason: "audience: not issued for '\(audience)'") }
        return .valid(claims)
    }

    /// `GET /.well-known/jwks.json` (RFC 7517): the public half of every configured key.
    public var jwks: String {
        let keys = publicKeys.map { k in
            #"{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":\#(Self.quoted(k.kid)),"x":"\#(k.x)","y":"\#(k.y)"}"#
        }
        return #"{"keys":[\#(keys.joined(separator: ","))]}"#
    }

    private static func quoted(_ s: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [s])) ?? Data("[\"\"]".utf8)
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }

    private static func short(_ error: any Error) -> String { String(String(describing: error).prefix(120)) }
}
