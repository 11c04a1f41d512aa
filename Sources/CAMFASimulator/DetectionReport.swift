import CAMFACore

/// Scores a run against a labelled stream (issue 23): which logins of each behaviour were
/// challenged, and the two headline figures of adaptive MFA, account-takeover logins
/// challenged and legitimate successful logins challenged.
///
/// A login is matched to what camfa decided for it by (user, requestDate), which the
/// labelled stream keeps unique per user; that works for the MFA topic (a CloudEvent's
/// `subject` and `data.trigger.requestDate`) and for `camfa replay` output (`user`,
/// `requestDate`, `decisions`), whatever partition or offset the login got.
public struct DetectionReport: Sendable, Equatable {
    /// One labelled login.
    public struct Label: Sendable, Equatable {
        public var user: String
        public var requestDate: Int64
        /// `legit.home`, `ato.stuffing`, …: the report's rows.
        public var behaviour: String
        public var attack: Bool
        /// The login succeeded (an account takeover is a successful attacker login).
        public var success: Bool

        public init(user: String, requestDate: Int64, behaviour: String, attack: Bool, success: Bool) {
            self.user = user
            self.requestDate = requestDate
            self.behaviour = behaviour
            self.attack = attack
            self.success = success
        }
    }

    public struct Row: Sendable, Equatable {
        public var behaviour: String
        public var attack: Bool
        public var logins = 0
        public var challenged = 0
        public var share: Double { logins == 0 ? 0 : Double(challenged) / Double(logins) }
    }

    public struct Share: Sendable, Equatable {
        public var logins = 0
        public var challenged = 0
        public var percent: Double { logins == 0 ? 0 : 100 * Double(challenged) / Double(logins) }
    }

    /// Per behaviour, sorted by name.
    public var rows: [Row]
    /// Successful attacker logins: the share camfa challenged (the goal is ≥ 99.5 %).
    public var takeovers: Share
    /// Successful legitimate logins: the share camfa challenged (the goal is ≤ 2 %).
    public var legitimate: Share
    /// Takeovers of users with at least one earlier legitimate successful login: what a
    /// history can catch. The others are cold starts, which no history-based score sees.
    public var takeoversWithHistory: Share
    /// Decisions that matched no label (another stream, or a label file out of step).
    public var unmatched: Int
    /// The share of takeovers and of legitimate successful logins whose risk score reaches
    /// each threshold; empty unless every successful login has a score (`camfa replay`
    /// output does; the MFA topic carries challenged logins only).
    public var curve: [CurvePoint]

    public struct CurvePoint: Sendable, Equatable {
        public var threshold: Double
        public var takeovers: Share
        public var legitimate: Share
    }

    /// Risk score thresholds of the curve, in bits.
    public static let curveThresholds: [Double] = Array(stride(from: 0.0, through: 24, by: 2))

    /// `challenged`: the (user, requestDate) pairs camfa challenged or denied; `scores`:
    /// the risk score of each login, where the decisions carry one.
    public init(labels: [Label], challenged: Set<Login>, scores: [Login: Double] = [:]) {
        var byBehaviour: [String: Row] = [:]
        var takeovers = Share(), legitimate = Share(), withHistory = Share()
        var history: Set<String> = []
        var scored: [(attack: Bool, score: Double)] = []
        var unscored = 0
        for l in labels.sorted(by: { $0.requestDate < $1.requestDate }) {
            let login = Login(user: l.user, requestDate: l.requestDate)
            let hit = challenged.contains(login)
            byBehaviour[l.behaviour, default: Row(behaviour: l.behaviour, attack: l.attack)].logins += 1
            if hit { byBehaviour[l.behaviour]!.challenged += 1 }
            guard l.success else { continue }
            if let score = scores[login] { scored.append((l.attack, score)) } else { unscored += 1 }
            if l.attack {
                takeovers.logins += 1
                if hit { takeovers.challenged += 1 }
                if history.contains(l.user) {
                    withHistory.logins += 1
                    if hit { withHistory.challenged += 1 }
                }
            } else {
                legitimate.logins += 1
                if hit { legitimate.challenged += 1 }
                history.insert(l.user)
            }
        }
        rows = byBehaviour.values.sorted { $0.behaviour < $1.behaviour }
        self.takeovers = takeovers
        self.legitimate = legitimate
        takeoversWithHistory = withHistory
        unmatched = challenged.subtracting(labels.map { Login(user: $0.user, requestDate: $0.requestDate) }).count
        curve = unscored > 0 || scored.isEmpty ? [] : Self.curveThresholds.map { t in
            var point = CurvePoint(threshold: t, takeovers: Share(), legitimate: Share())
            for x in scored {
                if x.attack {
                    point.takeovers.logins += 1
                    if x.score >= t { point.takeovers.challenged += 1 }
                } else {
                    point.legitimate.logins += 1
                    if x.score >= t { point.legitimate.challenged += 1 }
                }
            }
            return point
        }
    }

    /// What a file of decisions says: the logins held, and the risk scores it carries.
    public struct Decisions: Sendable {
        public var challenged = Set<Login>()
        public var scores: [Login: Double] = [:]
    }

    public struct Login: Hashable, Sendable {
        public var user: String
        public var requestDate: Int64
        public init(user: String, requestDate: Int64) { self.user = user; self.requestDate = requestDate }
    }

    public struct InputError: Error, Sendable, CustomStringConvertible {
        public var file: String
        public var line: Int
        public var message: String
        public var description: String { "\(file):\(line): \(message)" }
    }

    /// A labels file: one JSON object per line, `{"user", "requestDate", "behaviour",
    /// "attack", "success"}`.
    public static func labels(jsonLines bytes: [UInt8], file: String) throws(InputError) -> [Label] {
        var out: [Label] = []
        for (number, line) in lines(bytes) {
            guard case .map(let m)? = try? JSONParser.parse(line),
                  case .string(let user)? = m[string: "user"], case .int(let t)? = m[string: "requestDate"],
                  case .string(let behaviour)? = m[string: "behaviour"], case .bool(let attack)? = m[string: "attack"],
                  case .bool(let success)? = m[string: "success"] else {
                throw InputError(file: file, line: number,
                                 message: "a label is {\"user\": string, \"requestDate\": int, \"behaviour\": string, \"attack\": bool, \"success\": bool}")
            }
            out.append(Label(user: user, requestDate: t, behaviour: behaviour, attack: attack, success: success))
        }
        return out
    }

    /// The logins challenged (an `mfa` or `deny` decision, a challenge held by cooldown
    /// included: the user is held either way) in a file of MFA events (CloudEvents, one
    /// per line, as a consumer of the MFA topic writes them) or of `camfa replay` lines.
    public static func challenged(jsonLines bytes: [UInt8], file: String) throws(InputError) -> Set<Login> {
        try decisions(jsonLines: bytes, file: file).challenged
    }

    /// As `challenged`, plus each login's risk score: the numeric return `scoreField` of
    /// the fired policy `scorePolicy`, in the explanation of an MFA event or of a replay
    /// decision.
    public static func decisions(jsonLines bytes: [UInt8], file: String, scorePolicy: String = "risk",
                                 scoreField: String = "score") throws(InputError) -> Decisions {
        var out = Decisions()
        func score(_ explanations: Value?, _ login: Login) {
            guard case .list(let items)? = explanations else { return }
            for item in items {
                guard case .map(let p) = item, p[string: "policy"] == .string(scorePolicy),
                      case .map(let returns)? = p[string: "returns"] else { continue }
                switch returns[string: scoreField] {
                case .double(let d)?: out.scores[login] = d
                case .int(let i)?: out.scores[login] = Double(i)
                default: break
                }
            }
        }
        for (number, line) in lines(bytes) {
            guard case .map(let m)? = try? JSONParser.parse(line) else {
                throw InputError(file: file, line: number, message: "not a JSON object")
            }
            if case .string(let user)? = m[string: "subject"], case .map(let data)? = m[string: "data"] {
                guard case .map(let trigger)? = data[string: "trigger"], case .int(let t)? = trigger[string: "requestDate"] else {
                    throw InputError(file: file, line: number, message: "an MFA event without data.trigger.requestDate")
                }
                let login = Login(user: user, requestDate: t)
                if case .string(let action)? = data[string: "action"], action == "mfa" || action == "deny" {
                    out.challenged.insert(login)
                }
                score(data[string: "explanation"], login)
            } else if case .string(let user)? = m[string: "user"], case .int(let t)? = m[string: "requestDate"] {
                guard case .list(let decisions)? = m[string: "decisions"] else { continue }  // refused by the intake
                let login = Login(user: user, requestDate: t)
                let held = decisions.contains { d in
                    guard case .map(let dm) = d, case .string(let action)? = dm[string: "action"] else { return false }
                    return action == "mfa" || action == "deny"
                }
                if held { out.challenged.insert(login) }
                for d in decisions { if case .map(let dm) = d { score(dm[string: "firedPolicies"], login) } }
            } else {
                throw InputError(file: file, line: number, message: "neither an MFA event (subject, data) nor a camfa replay line (user, requestDate)")
            }
        }
        return out
    }

    /// Non-empty lines with their 1-based numbers.
    static func lines(_ bytes: [UInt8]) -> [(Int, [UInt8])] {
        var out: [(Int, [UInt8])] = []
        var number = 0
        for part in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
            number += 1
            var line = Array(part)
            if line.last == 0x0D { line.removeLast() }
            if !line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { out.append((number, line)) }
        }
        return out
    }

    /// The report as text: a row per behaviour, then the headline figures.
    public var text: String {
        var s = "behaviour                 kind     logins  challenged\n"
        for r in rows {
            s += "\(r.behaviour.rightPad(25)) \((r.attack ? "attack" : "legit").rightPad(7)) \(String(r.logins).leftPad(7))  \(format1(100 * r.share).leftPad(9)) %\n"
        }
        s += "account-takeover logins challenged:    \(format1(takeovers.percent)) % (\(takeovers.challenged) of \(takeovers.logins))\n"
        s += "legitimate successful logins challenged: \(format1(legitimate.percent)) % (\(legitimate.challenged) of \(legitimate.logins))\n"
        s += "  of users with a history:             \(format1(takeoversWithHistory.percent)) % (\(takeoversWithHistory.challenged) of \(takeoversWithHistory.logins)); the rest are cold starts\n"
        if unmatched > 0 { s += "decisions matching no label: \(unmatched)\n" }
        if !curve.isEmpty {
            s += "risk score ≥   takeovers   legitimate\n"
            for p in curve {
                s += "\(format1(p.threshold).leftPad(8)) bits  \(format1(p.takeovers.percent).leftPad(7)) %  \(format1(p.legitimate.percent).leftPad(8)) %\n"
            }
        }
        return s
    }

    /// The report as one JSON object.
    public var json: Value {
        .map(ValueMap([
            ("rows", .list(rows.map { r in
                .map(ValueMap([("behaviour", .string(r.behaviour)), ("attack", .bool(r.attack)),
                               ("logins", .int(Int64(r.logins))), ("challenged", .int(Int64(r.challenged)))]))
            })),
            ("takeoversChallengedPercent", .double(takeovers.percent)), ("takeoverLogins", .int(Int64(takeovers.logins))),
            ("legitimateChallengedPercent", .double(legitimate.percent)), ("legitimateLogins", .int(Int64(legitimate.logins))),
            ("takeoversWithHistoryChallengedPercent", .double(takeoversWithHistory.percent)),
            ("takeoverLoginsWithHistory", .int(Int64(takeoversWithHistory.logins))),
            ("unmatched", .int(Int64(unmatched))),
            ("curve", .list(curve.map { p in
                .map(ValueMap([("threshold", .double(p.threshold)), ("takeoversPercent", .double(p.takeovers.percent)),
                               ("legitimatePercent", .double(p.legitimate.percent))]))
            })),
        ]))
    }

    private func format1(_ x: Double) -> String {
        let tenths = Int((x * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }
}

extension String {
    fileprivate func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
    fileprivate func rightPad(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
