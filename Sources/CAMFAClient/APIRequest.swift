import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One call to camfa's HTTP API under a deadline, shared by the clients of the API.
enum APIRequest {
    enum Outcome: Sendable {
        /// camfa answered (any status).
        case answered(status: Int, body: Data)
        /// No answer: refused, reset, or not within the deadline (the reason).
        case failed(String)
    }

    /// `base` + `path`, where `path` is already percent-encoded (see `segment`).
    static func url(_ base: URL, _ path: String, query: [URLQueryItem] = []) -> URL? {
        var c = URLComponents(url: base, resolvingAgainstBaseURL: false) ?? URLComponents()
        let prefix = c.percentEncodedPath.hasSuffix("/") ? String(c.percentEncodedPath.dropLast()) : c.percentEncodedPath
        c.percentEncodedPath = prefix + path
        if !query.isEmpty { c.queryItems = query }
        return c.url
    }

    /// `value` as one path segment: "/" and the other reserved characters escaped.
    static func segment(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? value
    }

    static func make(_ method: String, _ url: URL, apiKey: String?, body: Data? = nil, timeout: Double) -> URLRequest {
        var request = URLRequest(url: url)
        request.httpMethod = method
        if let apiKey { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        // The deadline is the race in `send`. Foundation's own timeout is only a backstop:
        // on Linux it fires at once, now and then, when set below a second.
        request.timeoutInterval = timeout + 1
        return request
    }

    /// URLSession's timeout is an idle timeout; the race makes `timeout` a deadline.
    static func send(_ request: URLRequest, session: URLSession, timeout: Double) async -> Outcome {
        let result: Outcome? = await withTaskGroup(of: Outcome?.self) { group in
            group.addTask {
                do {
                    let (data, response) = try await session.data(for: request)
                    guard let http = response as? HTTPURLResponse else { return .failed("not an HTTP answer") }
                    return .answered(status: http.statusCode, body: data)
                } catch {
                    return .failed("no answer: \(error.localizedDescription)")
                }
            }
            group.addTask {
                try? await Task.sleep(nanoseconds: UInt64(max(0, timeout) * 1e9))
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        return result ?? .failed("no answer within \(timeout) s")
    }
}
