/// What the engine decided for one flow on one event, with the reasons.
public struct Decision: Sendable, Equatable {
    public enum Action: String, Sendable {
        case allow, deny, mfa
    }

    public var flow: String
    public var action: Action
    /// In order of preference; empty unless action is mfa.
    public var methods: [MFAMethod]
    /// Index of the branch that matched; nil when none did (the implicit allow).
    public var branch: Int?
    /// True when MFA is required but the user already has a pending challenge from this
    /// flow younger than its cooldown: no new challenge (and no new MFA event) is issued.
    public var suppressedByCooldown: Bool
    /// The challenge this decision issued or refers to; deterministic in the event's
    /// coordinates and the flow.
    public var challengeId: String?
    public var expiresAt: Int64?
    public var failMode: FailMode
    /// The policies the flow uses that hit, with the numbers that made them hit.
    public var firedPolicies: [PolicyExplanation]
    /// Policies or branches whose expressions failed on this event (never silently false).
    public var errors: [String]
    public var returns: ValueMap

    /// Whether this decision asks the outside world to challenge the user now.
    public var issuesChallenge: Bool { action == .mfa && !suppressedByCooldown }

    public static func == (a: Decision, b: Decision) -> Bool {
        a.flow == b.flow && a.action == b.action && a.methods == b.methods && a.branch == b.branch
            && a.suppressedByCooldown == b.suppressedByCooldown && a.challengeId == b.challengeId
            && a.expiresAt == b.expiresAt && a.failMode == b.failMode && a.firedPolicies == b.firedPolicies
            && a.errors == b.errors && a.returns.isIdentical(to: b.returns)
    }
}

public struct PolicyExplanation: Sendable, Equatable {
    public var policy: String
    /// The judgment expression that held.
    public var judgment: String
    /// name → (before the event, including it), for every statistic of the policy.
    public var statistics: [StatisticReading]
    public var returns: ValueMap

    public static func == (a: PolicyExplanation, b: PolicyExplanation) -> Bool {
        a.policy == b.policy && a.judgment == b.judgment && a.statistics == b.statistics
            && a.returns.isIdentical(to: b.returns)
    }
}

public struct StatisticReading: Sendable, Equatable {
    public var name: String
    public var key: String?
    public var before: Value
    public var current: Value

    public static func == (a: StatisticReading, b: StatisticReading) -> Bool {
        a.name == b.name && a.key == b.key && a.before.isIdentical(to: b.before) && a.current.isIdentical(to: b.current)
    }
}

/// The outcome of one event.
public enum EvaluationOutcome: Sendable, Equatable {
    case decided([Decision])
    /// Not evaluated; the daemon sends it to the dead-letter topic with this reason.
    case rejected(RejectReason)
}

public struct RejectReason: Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// Older than the partition watermark minus the allowed lateness.
        case late
    }
    public var code: Code
    public var message: String
    public var description: String { "\(code.rawValue): \(message)" }
}

extension Value {
    /// Structural identity (not CEL equality: NaN is identical to NaN, 1 and 1.0 differ),
    /// which is what "same input → same decisions" needs.
    public func isIdentical(to other: Value) -> Bool {
        switch (self, other) {
        case (.null, .null): return true
        case (.bool(let a), .bool(let b)): return a == b
        case (.int(let a), .int(let b)): return a == b
        case (.uint(let a), .uint(let b)): return a == b
        case (.double(let a), .double(let b)): return a.bitPattern == b.bitPattern
        case (.string(let a), .string(let b)): return a == b
        case (.bytes(let a), .bytes(let b)): return a == b
        case (.list(let a), .list(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.isIdentical(to: $1) }
        case (.map(let a), .map(let b)): return a.isIdentical(to: b)
        case (.duration(let a), .duration(let b)): return a == b
        case (.timestamp(let a), .timestamp(let b)): return a == b
        case (.type(let a), .type(let b)): return a == b
        case (.object(let a), .object(let b)):
            guard a.schema === b.schema else { return false }
            return a.schema.fieldNames.indices.allSatisfy { i in
                switch (a.field(at: i), b.field(at: i)) {
                case (nil, nil): true
                case (let x?, let y?): x.isIdentical(to: y)
                default: false
                }
            }
        default: return false
        }
    }
}

extension ValueMap {
    public func isIdentical(to other: ValueMap) -> Bool {
        count == other.count && zip(keys, other.keys).allSatisfy { $0.isIdentical(to: $1) }
            && zip(values, other.values).allSatisfy { $0.isIdentical(to: $1) }
    }
}
