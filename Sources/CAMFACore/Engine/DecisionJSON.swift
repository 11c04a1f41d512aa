/// The one JSON shape of a decision, shared by `camfa replay`, the MFA event's `data`
/// and the HTTP API, so subscribers and scripts see the same fields everywhere.
extension Decision {
    public var jsonValue: Value {
        var m = ValueMap()
        m[string: "flow"] = .string(flow)
        m[string: "action"] = .string(action.rawValue)
        m[string: "methods"] = .list(methods.map { .string($0.rawValue) })
        m[string: "branch"] = branch.map { .int(Int64($0 + 1)) } ?? .null
        m[string: "suppressedByCooldown"] = .bool(suppressedByCooldown)
        m[string: "challengeId"] = challengeId.map(Value.string) ?? .null
        m[string: "expiresAt"] = expiresAt.map(Value.int) ?? .null
        m[string: "failMode"] = .string(failMode.rawValue)
        m[string: "firedPolicies"] = .list(firedPolicies.map(\.jsonValue))
        m[string: "errors"] = .list(errors.map(Value.string))
        m[string: "returns"] = .map(returns)
        return .map(m)
    }
}

extension PolicyExplanation {
    public var jsonValue: Value {
        var stats = ValueMap()
        for s in statistics {
            var r = ValueMap()
            r[string: "before"] = s.before
            r[string: "current"] = s.current
            stats[string: s.name] = .map(r)
        }
        var m = ValueMap()
        m[string: "policy"] = .string(policy)
        m[string: "judgment"] = .string(judgment)
        m[string: "statistics"] = .map(stats)
        m[string: "returns"] = .map(returns)
        return .map(m)
    }
}

extension EvaluationOutcome {
    public var decisions: [Decision] {
        if case .decided(let d) = self { return d }
        return []
    }
}
