import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// API mode: `POST /v1/evaluate`, one UEBA event through the `http` flows of its app, the
/// decisions as typed values. camfa stores the event in its input topic first, so it counts
/// once and in order with the user's other events, exactly as if it had been captured.
public final class EvaluateClient: Sendable {
    /// camfa's HTTP API (`http.address`), e.g. `https://camfa.internal:8443`.
    public let baseURL: URL
    private let apiKey: String
    private let session: URLSession

    /// - Parameters:
    ///   - baseURL: camfa's HTTP API.
    ///   - apiKey: a key with the `evaluate` scope.
    ///   - session: the URLSession the calls go through (TLS settings, proxies).
    public init(baseURL: URL, apiKey: String, session: URLSession = URLSession(configuration: .ephemeral)) {
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.session = session
    }

    /// - Parameters:
    ///   - event: one UEBA event (schemas/ueba-event.schema.json) as JSON.
    ///   - flow: run only this `http` flow.
    ///   - timeout: seconds until the call gives up with `EvaluateError.Code.noAnswer`.
    ///     Unlike `StatusClient.checkUserStatus`, nothing is decided for the caller: an
    ///     evaluation that did not happen is an error, and the caller's fail mode applies.
    public func evaluate(json event: Data, flow: String? = nil, timeout: Double = 2) async throws(EvaluateError) -> Evaluation {
        guard let url = APIRequest.url(baseURL, "/v1/evaluate", query: flow.map { [URLQueryItem(name: "flow", value: $0)] } ?? []) else {
            throw EvaluateError(code: .noAnswer, message: "cannot build a URL from \(baseURL)")
        }
        let request = APIRequest.make("POST", url, apiKey: apiKey, body: event, timeout: timeout)
        switch await APIRequest.send(request, session: session, timeout: timeout) {
        case .failed(let reason):
            throw EvaluateError(code: .noAnswer, message: reason)
        case .answered(200, let body):
            do { return try JSONDecoder.camfa.decode(Evaluation.self, from: body) } catch {
                throw EvaluateError(code: .notAnEvaluation, message: "the answer is not an evaluation: \(error)", status: 200)
            }
        case .answered(let status, let body):
            let problem = try? JSONDecoder.camfa.decode(ErrorBody.self, from: body).error
            throw EvaluateError(code: .refused(problem?.code ?? "http-\(status)"), message: problem?.message ?? "HTTP \(status)",
                                field: problem?.field, status: status)
        }
    }

    private struct ErrorBody: Decodable {
        struct Problem: Decodable {
            var code: String
            var message: String
            var field: String?
        }
        var error: Problem
    }
}

/// Why an evaluation has no result.
public struct EvaluateError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure it was.
    public enum Code: Sendable, Equatable {
        /// camfa did not answer within the timeout, or the connection failed.
        case noAnswer
        /// camfa refused the request with its error code (`invalid`, `out-of-time`,
        /// `unknown-flow`, `unauthorized`, `forbidden`, `rate-limited`, `unavailable`, ...;
        /// schemas/openapi.yaml), or `http-<status>` when the body named none.
        case refused(String)
        /// A 200 whose body is not an evaluation (not camfa, or a newer incompatible camfa).
        case notAnEvaluation
    }

    /// What kind of failure it was.
    public var code: Code
    /// camfa's message, or what went wrong on the way.
    public var message: String
    /// The offending field of the event, when camfa named one (`requestDate`, `geo.latitude`).
    public var field: String?
    /// The HTTP status, when camfa answered.
    public var status: Int?

    /// An error as the client reports it; for tests and wrappers.
    public init(code: Code, message: String, field: String? = nil, status: Int? = nil) {
        self.code = code
        self.message = message
        self.field = field
        self.status = status
    }

    public var description: String { "\(status.map { "HTTP \($0): " } ?? "")\(message)\(field.map { " (field \($0))" } ?? "")" }
}

/// The answer of `POST /v1/evaluate`: the decisions of the flows that ran, in flow order.
public struct Evaluation: Sendable, Equatable, Decodable {
    /// Where camfa stored the event in its input topic (MFA event ids derive from it).
    public struct Coordinates: Sendable, Equatable, Decodable {
        /// camfa's input topic.
        public var topic: String
        /// The partition, which holds the user's state.
        public var partition: Int
        /// The offset of the stored event.
        public var offset: Int64
    }

    /// True when any decision's action is `mfa`.
    public var mfaRequired: Bool
    /// Where camfa stored the event.
    public var coordinates: Coordinates
    /// One per flow that ran, in flow order.
    public var decisions: [Decision]
}

/// One flow's decision on one event, with the explanation (the `Decision` schema shared
/// with `camfa replay` and the MFA event's data).
public struct Decision: Sendable, Equatable, Decodable {
    /// What the flow decided.
    public enum Action: String, Sendable, Equatable, Decodable {
        /// Go on.
        case allow
        /// Refuse the request and end the session.
        case deny
        /// Challenge the user with one of `methods` before going on.
        case mfa
    }

    /// A policy that hit, and the statistic values that made it hit.
    public struct FiredPolicy: Sendable, Equatable, Decodable {
        /// A statistic the judgment read, around the event.
        public struct Statistic: Sendable, Equatable, Decodable {
            /// The value before the event.
            public var before: JSONValue
            /// The value including the event.
            public var current: JSONValue
        }

        /// The policy's name.
        public var policy: String
        /// The judgment expression that held.
        public var judgment: String
        /// The statistics the judgment read, by name.
        public var statistics: [String: Statistic]
        /// The policy's returned values.
        public var returns: [String: JSONValue]
    }

    /// The flow's name.
    public var flow: String
    /// What the flow decided.
    public var action: Action
    /// In order of preference; empty unless `action` is `mfa`.
    public var methods: [String]
    /// The 1-based branch that matched; nil for the implicit allow.
    public var branch: Int?
    /// MFA is required but a challenge of this flow is already pending within its cooldown.
    public var suppressedByCooldown: Bool
    /// The challenge id (the MFA event's id) the decision issued or refers to.
    public var mfaEventId: String?
    /// mfa: when the challenge stops being valid.
    public var expiresAt: Date?
    /// What a status check does for the user when camfa does not answer.
    public var failMode: FailMode
    /// The policies that hit, with their statistics.
    public var firedPolicies: [FiredPolicy]
    /// Expressions that failed to evaluate (the flow went on without them).
    public var errors: [String]
    /// The flow's returned values.
    public var returns: [String: JSONValue]
}

/// A JSON value of the parts of an answer whose shape the policies choose (statistics,
/// returned values).
public enum JSONValue: Sendable, Equatable, Decodable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// Any JSON number.
    case number(Double)
    /// A string.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object.
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }
}

extension JSONDecoder {
    /// camfa's answers: dates as RFC 3339 with milliseconds.
    static var camfa: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            let c = try decoder.singleValueContainer()
            let text = try c.decode(String.self)
            guard let date = APITime.parse(text) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "not an RFC 3339 time: \(text)")
            }
            return date
        }
        return d
    }
}
