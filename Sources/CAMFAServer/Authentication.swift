import CAMFADaemon
import Hummingbird

/// Who may call what: every route names the scope it needs; only the endpoints listed in
/// `http.openEndpoints` (by default /healthz) answer without a key.
struct Access: Sendable {
    let keys: KeyRing
    let open: Set<String>
    let limiter: RateLimiter

    init(_ http: Configuration.HTTP) {
        keys = KeyRing(keys: http.apiKeys)
        open = http.openEndpoints
        limiter = RateLimiter(perSecond: http.rateLimitPerSecond, burst: http.rateLimitBurst)
    }

    /// Throws 401 (no or unknown key) or 403 (known key without `scope`); returns the
    /// key's name for logs. `endpoint` is the route template for the open list.
    @discardableResult
    func check(_ request: Request, endpoint: String, scope: Configuration.HTTP.Scope) throws(APIError) -> String? {
        if open.contains(endpoint) { return nil }
        guard let header = request.headers[.authorization] else {
            throw .unauthorized("an API key is required: Authorization: Bearer <key>")
        }
        guard let presented = Self.bearer(header) else {
            throw .unauthorized("the Authorization header must be 'Bearer <key>'")
        }
        guard let key = keys.match(presented) else { throw .unauthorized("unknown API key") }
        guard key.scopes.contains(scope) else { throw .forbidden(scope: scope) }
        if let wait = limiter.take(key.name) { throw .rateLimited(retryAfter: wait) }
        return key.name
    }
}

extension Access {
    /// Whether the request's key (or the open list) grants `scope`, without refusing.
    func allows(_ request: Request, scope: Configuration.HTTP.Scope) -> Bool {
        guard let header = request.headers[.authorization], let presented = Self.bearer(header) else { return false }
        return keys.match(presented)?.scopes.contains(scope) ?? false
    }

    /// The key of an `Authorization: Bearer <key>` header (scheme case-insensitive).
    static func bearer(_ header: String) -> String? {
        guard header.count > 7, header.prefix(7).lowercased() == "bearer " else { return nil }
        return header.dropFirst(7).trimmingSpaces
    }
}

extension Substring {
    var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
