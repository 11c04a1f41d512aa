import CAMFACore
import CAMFADaemon
import Foundation
import Hummingbird

/// Every non-2xx answer of the HTTP API: `{"error": {"code", "message", "field"?}}` with a
/// status. Codes are the pipeline's (`PipelineRequestError.Code`) plus the HTTP layer's own.
struct APIError: Error, Sendable {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    var field: String?
    var headers: HTTPFields = [:]

    static func unauthorized(_ message: String) -> APIError {
        // RFC 6750: a bearer challenge tells clients which scheme to use.
        APIError(status: .unauthorized, code: "unauthorized", message: message,
                 headers: [.wwwAuthenticate: "Bearer realm=\"camfa\""])
    }

    static func rateLimited(retryAfter seconds: Int) -> APIError {
        APIError(status: .tooManyRequests, code: "rate-limited",
                 message: "this API key is over http.rateLimit; retry after \(seconds) s", headers: [.retryAfter: String(seconds)])
    }

    static func methodNotAllowed(_ allowed: [String]) -> APIError {
        APIError(status: .methodNotAllowed, code: "method-not-allowed",
                 message: "this endpoint answers \(allowed.joined(separator: ", "))", headers: [.allow: allowed.joined(separator: ", ")])
    }

    static func forbidden(scope: Configuration.HTTP.Scope) -> APIError {
        APIError(status: .forbidden, code: "forbidden", message: "the API key lacks the '\(scope.rawValue)' scope")
    }

    static func tooLarge(limit: Int) -> APIError {
        APIError(status: .contentTooLarge, code: "too-large", message: "the request body exceeds http.maxBodyBytes (\(limit) bytes)")
    }

    static let notFound = APIError(status: .notFound, code: "not-found", message: "no such endpoint")

    /// The pipeline's refusals. not-owned is 503 with Retry-After, not 421: the user's
    /// partition moves to another instance during a rebalance, and clients and load
    /// balancers retry or fail over on 503 without special handling.
    init(_ e: PipelineRequestError) {
        code = e.code.rawValue
        message = e.message
        field = e.field
        switch e.code {
        case .invalid: status = .badRequest
        case .unknownFlow: status = .notFound
        case .notOwned, .unavailable:
            status = .serviceUnavailable
            headers = [.retryAfter: "1"]
        case .timeout: status = .gatewayTimeout
        case .unknownChallenge: status = .notFound
        case .expiredChallenge: status = .gone
        case .methodNotOffered: status = .unprocessableContent
        case .outOfTime: status = .conflict
        case .reloadFailed: status = .unprocessableContent
        // No factor to confirm or to answer with is a missing resource, as an unknown challenge is.
        case .noFactor: status = .notFound
        case .wrongCode, .replayedCode: status = .unprocessableContent
        case .tooManyAttempts: status = .tooManyRequests
        case .lockedOut: status = .tooManyRequests
        case .noCode: status = .notFound
        case .expiredCode: status = .gone
        case .tooManySends: status = .tooManyRequests
        // The feature is off on this server: its resources do not exist here.
        case .notConfigured: status = .notFound
        // The provider's failure, not camfa's: a gateway that got a bad answer upstream.
        case .deliveryFailed: status = .badGateway
        // The provider is the caller, and its credential (the signature) did not hold.
        case .badSignature:
            status = .unauthorized
            headers = [.wwwAuthenticate: "Camfa-Signature"]
        }
        if let until = e.retryAt {
            let seconds = max(1, (until - Int64(Date().timeIntervalSince1970 * 1000) + 999) / 1000)
            headers = [.retryAfter: String(seconds)]
        }
    }

    init(status: HTTPResponse.Status, code: String, message: String, field: String? = nil, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers
    }

    var response: Response {
        var e = ValueMap()
        e[string: "code"] = .string(code)
        e[string: "message"] = .string(message)
        if let field { e[string: "field"] = .string(field) }
        var body = ValueMap()
        body[string: "error"] = .map(e)
        return JSONResponse.make(status, .map(body), headers: headers)
    }
}

/// JSON responses through CAMFACore's writer: one JSON encoder for the whole project.
enum JSONResponse {
    static func make(_ status: HTTPResponse.Status, _ value: Value, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json"
        // The answers are per-user security state: never cached by intermediaries.
        h[.cacheControl] = "no-store"
        return Response(status: status, headers: h, body: ResponseBody(byteBuffer: ByteBuffer(bytes: JSONWriter.encode(value))))
    }
}
