import Foundation

/// The seed's subscription filter: `originalIdentity=…`, `appId=…`, `flow=…`, `action=…`.
/// Terms on the same field are alternatives, terms on different fields must all hold; no
/// term matches everything. The seed's own spelling is accepted as well:
/// `authing.security.mfa?originalIdentity=u1&appId=portal`.
public struct MFAEventFilter: Sendable, Equatable {
    /// A field a term can name.
    public enum Field: String, Sendable, CaseIterable {
        /// The user (the envelope's subject).
        case originalIdentity
        /// The app of the triggering event.
        case appId
        /// The flow that decided.
        case flow
        /// `mfa`, `deny` or `cleared`.
        case action
    }

    /// A term that is not `FIELD=VALUE` of a known field.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        /// The term as given.
        public var term: String
        /// What is wrong with it.
        public var message: String
        public var description: String { "filter '\(term)': \(message)" }
    }

    /// The accepted values of each field that has terms.
    public private(set) var terms: [Field: Set<String>] = [:]

    /// The filter that matches every event.
    public init() {}

    /// - Parameter specs: terms like `originalIdentity=u1` (values percent-decoded), or the
    ///   seed's `authing.security.mfa?originalIdentity=u1&appId=portal`.
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

    /// Whether `e` passes every field that has terms.
    public func matches(_ e: MFAEvent) -> Bool {
        for (field, values) in terms {
            let v: String? = switch field {
            case .originalIdentity: e.originalIdentity
            case .appId: e.appId
            case .flow: e.flow
            case .action: e.action.rawValue
            }
            guard let v, values.contains(v) else { return false }
        }
        return true
    }
}

/// Drops MFA events already seen: camfa publishes at least once (a redelivered input
/// record republishes with the same id). Remembers the last `capacity` ids.
public struct MFAEventDeduplicator: Sendable {
    /// How many of the latest ids are remembered.
    public let capacity: Int
    private var seen: Set<String> = []
    private var order: [String] = []
    private var head = 0

    /// - Parameter capacity: how many of the latest ids to remember.
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
