import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HTTPTypes
import Hummingbird
import Metrics
import NIOCore

/// Sends a request for a user this instance does not process to the instance that does
/// (its `http.advertisedURL`, from the owners topic) and answers with that instance's
/// response, status and body unchanged (README "Any instance answers"). Like Kafka
/// Streams' interactive queries, the owner is found through Kafka and asked directly.
///
/// Once only: the forwarded request carries `Camfa-Forwarded`, and an instance that gets
/// one never forwards it again, so a stale owners table ends in a 503, never in a loop.
/// The caller's API key goes along (the owner checks it against the same `http.apiKeys`),
/// which is why owner records must carry the daemon secret's MAC.
struct Forwarder: Sendable {
    static let header = HTTPField.Name("Camfa-Forwarded")!
    /// This instance's `http.advertisedURL`, named in the header for the owner's logs.
    let selfURL: String?
    /// Seconds for the whole exchange: longer than the owner may take (its
    /// `http.requestTimeout` and a code delivery), so this side does not give up, and invite
    /// a retry, on a request the owner is still completing.
    let timeout: Double
    /// No cookies, no cache, no redirects: the request carries the caller's credentials
    /// and goes to exactly the owner.
    private let session: URLSession

    init(selfURL: String?, timeout: Double) {
        self.selfURL = selfURL
        self.timeout = timeout
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpShouldSetCookies = false
        configuration.urlCache = nil
        session = URLSession(configuration: configuration, delegate: NoRedirects(), delegateQueue: nil)
    }

    static func wasForwarded(_ request: Request) -> Bool { request.headers[header] != nil }

    func forward(_ request: Request, body: [UInt8], to owner: String) async throws(APIError) -> Response {
        var target = owner + request.uri.path
        if let query = request.uri.query, !query.isEmpty { target += "?" + query }
        guard let url = URL(string: target) else { throw APIError(status: .badRequest, code: "invalid", message: "the request's path cannot be forwarded") }
        var out = URLRequest(url: url)
        out.httpMethod = request.method.rawValue
        out.timeoutInterval = timeout
        if request.method != .get && request.method != .delete || !body.isEmpty { out.httpBody = Data(body) }
        // The caller's credentials: an API key, or a face provider's signature.
        for name in [HTTPField.Name.authorization, .contentType, HTTPField.Name("Camfa-Signature")!] {
            if let value = request.headers[name] { out.setValue(value, forHTTPHeaderField: name.rawName) }
        }
        out.setValue(selfURL ?? "1", forHTTPHeaderField: Self.header.rawName)
        let data: Data, answer: HTTPURLResponse
        do {
            let (d, r) = try await session.data(for: out)
            guard let http = r as? HTTPURLResponse else { throw Self.unreachable(owner, "not an HTTP answer") }
            (data, answer) = (d, http)
        } catch let e as APIError {
            Self.count("unreachable")
            throw e
        } catch {
            Self.count("unreachable")
            throw Self.unreachable(owner, error.localizedDescription)
        }
        Self.count("answered")
        var headers: HTTPFields = [:]
        // The challenge page's own headers too (CSP, framing, caching): it may be forwarded.
        let passed: [HTTPField.Name] = [.contentType, .retryAfter, .wwwAuthenticate, .allow, .contentSecurityPolicy, .cacheControl]
            + ["X-Frame-Options", "Referrer-Policy", "X-Content-Type-Options"].compactMap { HTTPField.Name($0) }
        for name in passed {
            if let value = answer.value(forHTTPHeaderField: name.rawName) { headers[name] = value }
        }
        return Response(status: HTTPResponse.Status(code: answer.statusCode), headers: headers,
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    private static func count(_ outcome: String) {
        Counter(label: "camfa_requests_forwarded_total", dimensions: [("outcome", outcome)]).increment()
    }

    /// 503 like not-owned: the user's instance may be restarting, and a retry goes the
    /// same way once the owners topic names its successor.
    private static func unreachable(_ owner: String, _ why: String) -> APIError {
        APIError(status: .serviceUnavailable, code: "unavailable",
                 message: "the instance that processes the user (\(owner)) did not answer: \(why)", headers: [.retryAfter: "1"])
    }
}

/// A redirect from the owner is answered as it is, never followed with the caller's key.
private final class NoRedirects: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
        completionHandler(nil)
    }
}

/// The owner's answer to a forwarded request, passed through the ErrorMiddleware unchanged.
struct ForwardedResponse: Error {
    let response: Response
}
