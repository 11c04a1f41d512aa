import CAMFACore

/// One readable line per challenge: who, where, which factors, and the policy and numbers
/// that fired it. Used by `camfa replay --format pretty` and `camfa dev`.
enum PrettyDecision {
    static func line(_ d: Decision, event: UEBAEvent, colour: Bool) -> String {
        func paint(_ s: String, _ code: String) -> String { colour ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
        let action = d.action == .mfa ? paint("MFA " + d.methods.map(\.rawValue).joined(separator: ">"), "1;33")
                                      : paint(d.action.rawValue.uppercased(), "1;31")
        var why: [String] = []
        for p in d.firedPolicies {
            let nums = p.statistics.map { "\($0.name)=\(Self.short($0.current))" }.joined(separator: " ")
            why.append(nums.isEmpty ? p.policy : "\(p.policy)(\(nums))")
        }
        if why.isEmpty, case .string(let reason)? = d.returns[string: "reason"] { why.append(reason) }
        let app = event.appId ?? "-"
        return "\(paint(event.originalIdentity, "36")) app=\(app) \(action) flow=\(d.flow) \(why.joined(separator: "; "))"
    }

    static func short(_ v: Value) -> String {
        switch v {
        case .int(let i): return String(i)
        case .double(let x): return x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : String(format2(x))
        case .string(let s): return s
        case .null: return "-"
        case .map(let m): return "{" + m.entries.prefix(5).map { "\(short($0)):\(short($1))" }.joined(separator: ",") + "}"
        case .list(let l): return "[" + l.prefix(5).map(short).joined(separator: ",") + "]"
        case .bool(let b): return String(b)
        default: return "…"
        }
    }

    static func format2(_ x: Double) -> String {
        let r = (x * 100).rounded() / 100
        return String(r)
    }
}
