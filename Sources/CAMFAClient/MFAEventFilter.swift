import Foundation

/// What a subscriber needs of an `authing.security.mfa` event to filter and deduplicate it
/// (schemas/mfa-event.schema.json); the whole envelope stays with the caller.
public struct MFAEventSummary: Sendable, Equatable {
    public var id: String
    public var originalIdentity: String
    public var appId: String?
    public var flow: String?
    /// `mfa`, `deny` or `cleared`.
    public var action: String

    public init(id: String, originalIdentity: String, appId: String?, flow: String?, action: String) {
        self.id = id
        self.originalIdentity = originalIdentity
        self.appId = appId
        self.flow = flow
        self.action = action
    }

    /// nil when `json` is not an MFA event envelope (no id, subject or data.action).
    public init?(json: Data) {
        guard let e = try? JSONSerialization.jsonObject(with: json) as? [String: Any],
              let id = e["id"] as? String, !id.isEmpty, let subject = e["subject"] as? String,
              let data = e["data"] as? [String: Any], let action = data["action"] as? String else { return nil }
        self.init(id: id, originalIdentity: subject, appId: data["appId"] as? String, flow: data["flow"] as? String, action: action)
    }
}

/// The seed's subscription filter: `originalIdentity=…`, `appId=…`, `flow=…`, `action=…`.
/// Terms on the same field are alternatives, terms on different fields must all hold; no
/// term matches everything. The seed's own spelling is accepted as well:
/// `authing.security.mfa?originalIdentity=u1&appId=portal`.
public struct MFAEventFilter: Sendable, Equatable {
    public enum Field: String, Sendable, CaseIterable {
        case originalIdentity, appId, flow, action
    }

    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var term: String
        public var message: String
        public var description: String { "filter '\(term)': \(message)" }
    }

    public private(set) var terms: [Field: Set<String>] = [:]

    public init() {}

    public init(parsing specs: [String]) throws(ParseError) {
        for spec in specs {
            var body = Substring(spec)
            if let q = body.firstIndex(of: "?") {
                let topic = body[..<q]
                guard topic == "authing.security.mfa" else {
                    throw ParseError(term: spec, message: "only the topic authing.security.mfa can be subscribed to")
                }
                body = body[body.index(after: q)...]
            }
            for term in body.split(separator: "&") {
                guard let eq = term.firstIndex(of: "=") else {
                    throw ParseError(term: String(term), message: "expected FIELD=VALUE (\(Field.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                let name = String(term[..<eq]), raw = String(term[term.index(after: eq)...])
                guard let field = Field(rawValue: name) else {
                    throw ParseError(term: String(term), message: "unknown field '\(name)'; one of \(Field.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                let value = raw.removingPercentEncoding ?? raw
                guard !value.isEmpty else { throw ParseError(term: String(term), message: "the value is empty") }
                terms[field, default: []].insert(value)
            }
        }
    }

    public func matches(_ e: MFAEventSummary) -> Bool {
        for (field, values) in terms {
            let v: String? = switch field {
            case .originalIdentity: e.originalIdentity
            case .appId: e.appId
            case .flow: e.flow
            case .action: e.action
            }
            guard let v, values.contains(v) else { return false }
        }
        return true
    }
}

/// Drops MFA events already seen: camfa publishes at least once (a redelivered input
/// record republishes with the same id). Remembers the last `capacity` ids.
public struct MFAEventDeduplicator: Sendable {
    public let capacity: Int
    private var seen: Set<String> = []
    private var order: [String] = []
    private var head = 0

    public init(capacity: Int = 100_000) { self.capacity = max(1, capacity) }

    /// True the first time `id` is offered (within the remembered window).
    public mutating func isNew(_ id: String) -> Bool {
        guard seen.insert(id).inserted else { return false }
        if order.count < capacity {
            order.append(id)
        } else {
            seen.remove(order[head])
            order[head] = id
            head = (head + 1) % capacity
        }
        return true
    }
}
