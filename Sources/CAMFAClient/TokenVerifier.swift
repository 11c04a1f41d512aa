import CAMFATokens
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The seed's `verify(mfaToken)` → originalIdentity, locally: checks an mfaToken against
/// camfa's published keys (`GET /.well-known/jwks.json`), fetched once and refreshed every
/// `refreshInterval`, and at once (at most every 10 s) when a token names a key the cached
/// set does not have, so a key rotation needs no restart. No call to camfa per token.
public final class TokenVerifier: Sendable {
    /// A verified token's claims, in the seed's words.
    public struct VerifiedToken: Sendable, Equatable {
        /// The verified user (`sub`).
        public var originalIdentity: String
        /// The app the token was issued for (`aud`).
        public var app: String
        /// The challenge the user passed.
        public var mfaEventId: String
        /// camfa's method: otp, sms, email or face.
        public var method: String
        /// When the user passed the challenge (`iat`).
        public var authTime: Date
        /// When the token stops being valid (`exp`).
        public var expiresAt: Date
        /// The flow's authentication context class, if it sets one.
        public var acr: String?
    }

    /// The outcome of `verifyToken`.
    public enum Verification: Sendable, Equatable {
        /// Signed by camfa's key, for this issuer (and audience), not expired.
        case valid(VerifiedToken)
        /// Why not: a bad signature, an unknown key, expired, another audience, no keys.
        case invalid(reason: String)
    }

    /// camfa's `/.well-known/jwks.json`.
    public let jwksURL: URL
    /// The issuer a token must name (`iss`).
    public let issuer: String
    private let refreshInterval: Double
    private let session: URLSession
    private let cache = KeyCache()

    /// - Parameters:
    ///   - jwksURL: camfa's `/.well-known/jwks.json`.
    ///   - issuer: camfa's `tokens.issuer` (default `urn:camfa`).
    ///   - refreshInterval: seconds the fetched keys are used before they are fetched again.
    ///   - session: the URLSession the JWKS is fetched through.
    public init(jwksURL: URL, issuer: String = "urn:camfa", refreshInterval: Double = 300,
                session: URLSession = URLSession(configuration: .ephemeral)) {
        self.jwksURL = jwksURL
        self.issuer = issuer
        self.refreshInterval = refreshInterval
        self.session = session
    }

    /// - Parameters:
    ///   - token: the mfaToken (a compact JWS).
    ///   - audience: the calling app; a token issued for another app is invalid.
    ///   - now: the time the expiry is checked against.
    public func verifyToken(_ token: String, audience: String? = nil, now: Date = Date()) async -> Verification {
        let kid = MFATokens.kid(of: token)
        var keys = cache.current(maxAge: refreshInterval, now: now)
        if keys == nil || (kid.map { !keys!.kids.contains($0) } ?? false) && cache.mayRefetch(now: now) {
            switch await fetch() {
            case .success(let fresh):
                cache.store(fresh, now: now)
                keys = fresh
            case .failure(let reason):
                // A stale set still verifies tokens of the keys it has.
                if keys == nil { keys = cache.any }
                if keys == nil { return .invalid(reason: "no keys: \(reason)") }
            }
        }
        guard let keys else { return .invalid(reason: "no keys") }
        switch await keys.verify(token, audience: audience, now: Int64(now.timeIntervalSince1970)) {
        case .invalid(let reason): return .invalid(reason: reason)
        case .valid(let c):
            return .valid(VerifiedToken(
                originalIdentity: c.sub.value, app: c.aud.value.first ?? "", mfaEventId: c.mfaEventId,
                method: MFATokens.method(amr: c.amr.first ?? ""), authTime: c.iat.value, expiresAt: c.exp.value, acr: c.acr))
        }
    }

    private enum Fetched: Sendable {
        case success(MFATokens)
        case failure(String)
    }

    private func fetch() async -> Fetched {
        switch await APIRequest.send(APIRequest.make("GET", jwksURL, apiKey: nil, timeout: 5), session: session, timeout: 5) {
        case .failed(let reason): return .failure("\(jwksURL): \(reason)")
        case .answered(let status, _) where status != 200: return .failure("\(jwksURL): HTTP \(status)")
        case .answered(_, let body):
            do { return .success(try await MFATokens(jwks: String(decoding: body, as: UTF8.self), issuer: issuer)) } catch {
                return .failure("\(jwksURL): \(error)")
            }
        }
    }
}

private final class KeyCache: @unchecked Sendable {
    private let lock = NSLock()
    private var keys: MFATokens?
    private var fetchedAt = Date.distantPast
    private var lastAttempt = Date.distantPast

    func current(maxAge: Double, now: Date) -> MFATokens? {
        lock.withLock { now.timeIntervalSince(fetchedAt) < maxAge ? keys : nil }
    }

    var any: MFATokens? { lock.withLock { keys } }

    /// An unknown kid refetches at most every 10 s: garbage tokens must not turn the
    /// verifier into a JWKS flood.
    func mayRefetch(now: Date) -> Bool {
        lock.withLock {
            guard now.timeIntervalSince(lastAttempt) >= 10 else { return false }
            lastAttempt = now
            return true
        }
    }

    func store(_ k: MFATokens, now: Date) {
        lock.withLock {
            keys = k
            fetchedAt = now
        }
    }
}
