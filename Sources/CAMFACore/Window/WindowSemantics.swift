/// # Sliding-window statistics
///
/// Every statistic keeps, per key, one window that slides over **event time** (epoch
/// milliseconds from the event, never a wall clock).
///
/// **Coverage.** Times are grouped in buckets of `resolution` ms: bucket(t) =
/// floor(t / resolution). A window of `length` ms whose end is E covers the buckets
/// (floor(E / resolution) − length / resolution, floor(E / resolution)]. With a 1 ms
/// resolution this is exactly the event times (E − length, E]: an event at E − length
/// is out, one at E − length + 1 is in. With a coarser resolution an event stays in the
/// window between length − resolution + 1 ms and length ms after its own time, i.e. the
/// window is exact up to one bucket (error < resolution at the old edge only; the new
/// edge is always exact because events after E do not exist yet).
///
/// **Default resolution.** 1 s for length ≤ 1 h, 1 min for length ≤ 1 day, 1 h above.
/// The old edge is then off by less than one resolution: under 0.03 % of a 1 h window,
/// 0.07 % of a 1 day window, 0.14 % of a 30 day window (but up to 1.7 % of a 1 min
/// window and 4 % of a 25 h one; pass a finer resolution where that matters). When the default does not divide the length, the greatest common divisor of
/// both is used, so `length % resolution == 0` always holds.
///
/// **Order and lateness.** The end only moves forward: `advance(to: t)` sets it to
/// max(end, t) and evicts buckets that left the window. An event with time
/// t ≥ end − allowedLateness is accepted (`.added`) and counted in its own bucket; if
/// that bucket already left the window it is accepted but changes nothing, which is
/// exactly what in-order arrival would have produced. An event with
/// t < end − allowedLateness is `.late` and not counted. Adding an event after the end
/// first advances the window to it.
///
/// **Aggregations.**
/// - `count` → `.int`, the number of events in the window.
/// - `sum` → `.double`, sum of numeric values (int, uint, double); other values and
///   non-finite doubles are ignored (the engine type-checks ahead). `0` when empty.
/// - `avg` → `.double`, mean of those same values, `.null` when there are none.
/// - `min`, `max` → `.double` over those same values, `.null` when there are none.
///   Running sums are kept incrementally (added, then subtracted on eviction), so sum
///   and avg carry the usual floating-point rounding of such sums; they are reset to 0
///   exactly whenever the window empties.
/// - `distinctCount` → `.int`, the number of distinct scalar values (CEL equality: `1`,
///   `1u` and `1.0` are one value; null, bool, int/uint/double, string, bytes, duration
///   and timestamp count; lists, maps and objects are ignored). Exact while at most
///   `distinctExactLimit` distinct values are live. Above that the statistic switches to
///   a sliding HyperLogLog: 1024 registers (p = 10), each keeping the maxima that can
///   still become the register's maximum as the window slides, with linear counting for
///   small cardinalities. Its relative standard error is 1.04 / √1024 ≈ 3.3 %
///   (≈ 6.5 % at two standard deviations). It returns to exact counting only once the
///   window has emptied.
/// - `first` → the value of the earliest event in the window (by event time, ties by
///   arrival), `last` → the latest, `previous` → the one before the latest; `.null`
///   when there is no such event.
/// - `profile` → `.map` value → count (`.int`) of the `profileTop` values with the most
///   events in the window, ordered by count descending, ties by most recently seen
///   first (latest event time, then latest arrival). Values must be valid CEL map keys
///   (string, int, uint, bool; an integral double is its int); others are ignored. At
///   most `profileCapacity` candidate values are tracked. While the live distinct values
///   fit, counts are exact. When a new value arrives and all candidates are live, the
///   candidate with the lowest count (ties: least recently seen) is replaced in the
///   Space-Saving manner: the newcomer inherits the victim's in-window events, so its
///   count overestimates by at most the victim's count at replacement time, and that
///   excess leaves the window with the victim's events. The usual Space-Saving
///   trade-off applies: with more live values than candidates, a value that keeps
///   being replaced before it accumulates events can be missing from the report.
///
/// **Empty.** `isEmpty` is true once nothing the aggregation counts is left in the
/// window (values it ignores, such as a string for `sum`, do not keep it alive); the
/// engine may then drop the key, since a fresh state gives the same results.
///
/// **Cost.** State is sparse: one entry per non-empty bucket (count, sum, avg, first;
/// count keeps its newest bucket inline, so a key whose events share one bucket
/// allocates nothing), one per bucket that can still hold the extreme (min, max), one
/// per live value up to 16 values then one per (value, bucket) sighting (exact
/// distinct), about 2 bytes per event plus 40 bytes per candidate (profile), and two
/// values (last, previous). A key with k events in the window costs
/// O(min(k, length / resolution)); nothing is allocated per empty bucket; dead entries
/// never outnumber live ones. `WindowState` itself is 48 bytes inline. In-order events
/// cost O(1) amortized whatever the window length; an out-of-order event costs
/// O(buckets it jumps over) (for the profile, O(events in the window)). The sketch
/// scans its 1024 registers when one of them has something to evict, at most once per
/// bucket the window moves. `current` of a profile builds a `ValueMap` (about a
/// microsecond); `profileStanding(of:spec:)` answers one value's rank without it.
///
/// **Checkpoints.** `write(to:)` / `init(from:)` serialize everything that influences
/// later results, behind a version byte; restoring and continuing gives the same
/// states and outputs as never having stopped. The state does not record its spec:
/// a state restored under another aggregation restarts empty, but one restored under
/// another length or resolution would be misread, so the engine must key checkpoints
/// by the statistic's definition.
/// - `risk` → a map, the score of the event's features against the key's decayed history
///   and the partition's population (RiskScore.swift for the formula,
///   WindowFrequencies.swift for the state). Unlike the others it depends on the event:
///   the engine computes it, and the window itself only keeps the frequencies. The state
///   empties a window length after its latest event.
public enum Aggregation: Sendable, Hashable, CaseIterable {
    case count, sum, min, max, avg, distinctCount, first, last, previous, profile, risk
}

/// What happened to an added observation.
public enum AddOutcome: Sendable, Hashable {
    case added
    /// Older than the window end minus the allowed lateness: not counted.
    case late
}

/// A rejected window configuration, for the policy loader to report.
public struct WindowSpecError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        case nonPositiveLength, nonPositiveResolution, resolutionDoesNotDivideLength
        case negativeLateness, invalidDistinctLimit, invalidProfileSize, invalidRisk
    }
    public var code: Code
    public var message: String
    public var description: String { "invalid window (\(code.rawValue)): \(message)" }
}

public struct WindowSpec: Sendable, Hashable {
    /// Milliseconds.
    public var length: Int64
    /// Bucket width in milliseconds; `length % resolution == 0`.
    public var resolution: Int64
    public var aggregation: Aggregation
    /// Milliseconds.
    public var allowedLateness: Int64
    public var distinctExactLimit: Int
    /// Profile: how many values it reports.
    public var profileTop: Int
    /// Profile: how many candidate values it keeps (at most 255).
    public var profileCapacity: Int
    /// Risk: features, capacities, half-life and levels; nil for every other aggregation.
    public var risk: RiskSpec?

    /// Largest supported profile capacity: candidates are referenced by one byte.
    public static let maxProfileCapacity = 255

    /// Traps on an invalid configuration; use `init(validating:...)` for user input.
    public init(
        length: Int64, aggregation: Aggregation, resolution: Int64? = nil, allowedLateness: Int64 = 0,
        distinctExactLimit: Int = 256, profileTop: Int = 5, profileCapacity: Int = 16, risk: RiskSpec? = nil
    ) {
        do {
            try self.init(
                validating: length, aggregation: aggregation, resolution: resolution,
                allowedLateness: allowedLateness, distinctExactLimit: distinctExactLimit,
                profileTop: profileTop, profileCapacity: profileCapacity, risk: risk)
        } catch {
            preconditionFailure(error.description)
        }
    }

    public init(
        validating length: Int64, aggregation: Aggregation, resolution: Int64? = nil, allowedLateness: Int64 = 0,
        distinctExactLimit: Int = 256, profileTop: Int = 5, profileCapacity: Int = 16, risk: RiskSpec? = nil
    ) throws(WindowSpecError) {
        guard length > 0 else { throw WindowSpecError(code: .nonPositiveLength, message: "length \(length) ms must be positive") }
        let res = resolution ?? WindowSpec.defaultResolution(length: length)
        guard res > 0 else { throw WindowSpecError(code: .nonPositiveResolution, message: "resolution \(res) ms must be positive") }
        guard length % res == 0 else {
            throw WindowSpecError(code: .resolutionDoesNotDivideLength, message: "resolution \(res) ms does not divide length \(length) ms")
        }
        guard allowedLateness >= 0 else { throw WindowSpecError(code: .negativeLateness, message: "allowed lateness \(allowedLateness) ms must not be negative") }
        guard distinctExactLimit >= 0 else { throw WindowSpecError(code: .invalidDistinctLimit, message: "distinct exact limit \(distinctExactLimit) must not be negative") }
        guard (aggregation == .risk) == (risk != nil) else {
            throw WindowSpecError(code: .invalidRisk, message: "a risk spec goes with the risk aggregation, and only with it")
        }
        if let problem = risk?.problem { throw WindowSpecError(code: .invalidRisk, message: problem) }
        guard profileCapacity >= 1, profileCapacity <= WindowSpec.maxProfileCapacity, profileTop >= 1 else {
            throw WindowSpecError(code: .invalidProfileSize, message: "profile top \(profileTop) must be ≥ 1 and capacity \(profileCapacity) within 1...\(WindowSpec.maxProfileCapacity)")
        }
        self.length = length
        self.resolution = res
        self.aggregation = aggregation
        self.allowedLateness = allowedLateness
        self.distinctExactLimit = distinctExactLimit
        self.profileTop = profileTop
        self.profileCapacity = profileCapacity
        self.risk = risk
    }

    /// 1 s up to 1 h, 1 min up to 1 day, 1 h above; the gcd with the length when it
    /// does not divide it.
    public static func defaultResolution(length: Int64) -> Int64 {
        let preferred: Int64 = length <= 3_600_000 ? 1_000 : length <= 86_400_000 ? 60_000 : 3_600_000
        var a = max(length, 1), b = preferred
        while b != 0 { (a, b) = (b, a % b) }
        return a
    }

    /// Number of buckets the window spans.
    @inline(__always) var bucketSpan: Int64 { length / resolution }

    @inline(__always) func bucket(_ t: Int64) -> Int64 {
        let q = t / resolution
        return t % resolution < 0 ? q - 1 : q
    }
}
