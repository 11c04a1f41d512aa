#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The `risk` aggregation's score, after Freeman et al. (NDSS 2016, "Who Are You? A
/// Statistical Approach to Measuring User Authenticity"): how much likelier the login's
/// features are for an attacker, who is assumed to draw them from the population, than
/// for this user, given the user's history. Features are treated as independent, so the
/// log-likelihood ratios add; a hierarchy (IP → prefix → ASN → country, user agent →
/// browser → OS → device class) is expressed by listing each level as a feature, so that a
/// new IP in a known network costs less than a new network in a new country.
///
/// For a login at time T and a feature k with value x, with decayed weights (an event at
/// tᵢ weighs 2^(−(T − tᵢ)/halfLife)):
/// - population: cₚ(x) the weight of x among the partition's logins, Nₚ their total;
///   pₚ(x) = (cₚ(x) + 1) / (Nₚ + 1), so a value the population never showed is rare, not
///   impossible;
/// - user: cᵤ(x) and nᵤ likewise over the user's own logins, smoothed towards the
///   population with α (`smoothing`) logins' worth of prior:
///   pᵤ(x) = (cᵤ(x) + α · pₚ(x)) / (nᵤ + α);
/// - contribution(k) = log₂(pₚ(x) / pᵤ(x)) bits; score = Σ over the features present.
///
/// So a user with no history scores 0 (cold start: the population prior is all there is,
/// as in the paper, rather than challenging every first login); a value new to a user
/// with nᵤ logins adds log₂((nᵤ + α)/α) bits; a known value subtracts, the more so the
/// rarer it is in the population. Freeman's factor p(u | attack) / p(u) is left out: it
/// is one number per user that would rate rarely active users riskier for being rare, and
/// the thresholds are easier to read without it.
///
/// Levels: `high` from `high` bits, `medium` from `medium`, `low` below.
public enum RiskScore {
    /// One feature's population standing at T: weight of the value and total.
    public struct Prior: Sendable, Equatable {
        public var weight: Double
        public var total: Double
        public init(weight: Double, total: Double) {
            self.weight = weight
            self.total = total
        }
    }

    public struct Contribution: Sendable, Equatable {
        public var feature: String
        public var known: Bool
        public var bits: Double
    }

    public struct Assessment: Sendable, Equatable {
        public var score: Double
        public var level: String
        /// Decayed number of the user's logins in the history.
        public var logins: Double
        public var contributions: [Contribution]
    }

    public static func level(_ score: Double, spec: RiskSpec) -> String {
        score >= spec.high ? "high" : score >= spec.medium ? "medium" : "low"
    }

    /// Population standings of the event's values (nil where the event has none).
    static func priors(_ values: [ExactKey?], population: FrequencyState?, at t: Int64, spec: RiskSpec) -> [Prior?] {
        let s = population?.scale(at: t, halfLife: spec.halfLife) ?? 0
        return values.enumerated().map { f, value in
            guard let value else { return nil }
            guard let p = population, f < p.totals.count else { return Prior(weight: 0, total: 0) }
            return Prior(weight: p.weight(feature: f, of: value) * s, total: p.totals[f] * s)
        }
    }

    static func assess(_ values: [ExactKey?], user: FrequencyState?, priors: [Prior?], at t: Int64, spec: RiskSpec) -> Assessment {
        let s = user?.scale(at: t, halfLife: spec.halfLife) ?? 0
        var score = 0.0
        var contributions: [Contribution] = []
        contributions.reserveCapacity(values.count)
        for (f, value) in values.enumerated() {
            guard let value, let prior = priors[f] else { continue }
            var c = 0.0, n = 0.0
            if let user, f < user.totals.count {
                c = user.weight(feature: f, of: value) * s
                n = user.totals[f] * s
            }
            let bits = contribution(userWeight: c, userTotal: n, prior: prior, smoothing: spec.smoothing)
            score += bits
            contributions.append(Contribution(feature: spec.features[f], known: c > 0, bits: bits))
        }
        return Assessment(score: score, level: level(score, spec: spec), logins: (user?.events ?? 0) * s,
                          contributions: contributions)
    }

    /// log₂(pₚ(x) / pᵤ(x)) for one feature.
    @inline(__always)
    public static func contribution(userWeight c: Double, userTotal n: Double, prior: Prior, smoothing alpha: Double) -> Double {
        let pp = (prior.weight + 1) / (prior.total + 1)
        let pu = (c + alpha * pp) / (n + alpha)
        return log2(pp / pu)
    }

    /// What policies read as `stats.<name>` (and `before.<name>`, the same: the score
    /// always judges the login against the history before it).
    static func value(_ a: Assessment) -> Value {
        var features = ValueMap()
        var unknown: [Value] = []
        for c in a.contributions {
            features[.string(c.feature)] = .map(ValueMap([("known", .bool(c.known)), ("bits", .double(c.bits))]))
            if !c.known { unknown.append(.string(c.feature)) }
        }
        return .map(ValueMap([
            ("score", .double(a.score)), ("level", .string(a.level)), ("logins", .double(a.logins)),
            ("newFeatures", .list(unknown)), ("features", .map(features)),
        ]))
    }
}
