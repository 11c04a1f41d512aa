#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// Decayed feature frequencies: the state behind the `risk` aggregation (RiskScore.swift).
//
// One state holds, per feature (IP prefix, device, browser, ...), the values seen with
// their exponentially decayed weights: an event at time tᵢ weighs 2^(−(T − tᵢ)/halfLife)
// at time T. The same structure serves a user's history (a few values per feature) and
// the partition's population (hundreds), only the capacity differs.
//
// Weights are stored relative to a reference time `ref`: the stored number s means
// s · 2^(−(T − ref)/halfLife) at T. Adding at t adds 2^((t − ref)/halfLife), so an event
// costs no pass over the other values; when t runs 16 half-lives past `ref` everything is
// rescaled to t (the stored numbers stay within 2^16 of a count).
//
// Capacity: a feature that holds `capacity` values and sees a new one first drops its
// lightest eighth (at least one value; ties by value bytes, so a restored state drops
// exactly as the uninterrupted one). Totals keep the dropped weight: a dropped value is
// then as unseen as a value never seen, and is never counted as known (no Space-Saving
// inheritance, which would make an attacker's new value look familiar).

/// What a `risk` statistic's windows are configured with (policy file: `features`,
/// `capacity`, `halfLife`, `smoothing`, `levels`, `populationCapacity`).
public struct RiskSpec: Sendable, Hashable {
    /// Feature names, in the order of the statistic's `features`.
    public var features: [String]
    /// Values kept per feature for one key (user).
    public var capacity: Int
    /// Values kept per feature for the partition's population.
    public var populationCapacity: Int
    /// Milliseconds.
    public var halfLife: Int64
    /// α: how many logins' worth of the population prior a user's history starts with.
    public var smoothing: Double
    /// Score thresholds (bits) of the levels medium and high.
    public var medium: Double
    public var high: Double
    /// This spec describes the population slot, not a user's.
    public var isPopulation: Bool

    public static let maxFeatures = 16
    public static let maxCapacity = 65_536

    public init(features: [String], capacity: Int = 8, populationCapacity: Int = 512, halfLife: Int64 = 30 * 86_400_000,
                smoothing: Double = 1, medium: Double = 6, high: Double = 12, isPopulation: Bool = false) {
        self.features = features
        self.capacity = capacity
        self.populationCapacity = populationCapacity
        self.halfLife = halfLife
        self.smoothing = smoothing
        self.medium = medium
        self.high = high
        self.isPopulation = isPopulation
    }

    /// Why the spec cannot be used, or nil.
    public var problem: String? {
        if features.isEmpty || features.count > Self.maxFeatures { return "a risk statistic needs 1 to \(Self.maxFeatures) features" }
        if Set(features).count != features.count { return "feature names must be distinct" }
        if capacity < 1 || capacity > Self.maxCapacity || populationCapacity < 1 || populationCapacity > Self.maxCapacity {
            return "capacity and populationCapacity must be within 1...\(Self.maxCapacity)"
        }
        if halfLife <= 0 { return "halfLife must be positive" }
        if !(smoothing > 0) || !smoothing.isFinite { return "smoothing must be a positive number" }
        if !medium.isFinite || !high.isFinite || medium > high { return "levels: medium must not exceed high" }
        return nil
    }

    var slotCapacity: Int { isPopulation ? populationCapacity : capacity }
}

struct FrequencySlot: Sendable, Equatable {
    var feature: UInt8
    var value: ExactKey
    var weight: Double
}

struct FrequencyState: Sendable {
    /// Reference time of the stored weights (see the top of the file).
    var ref: Int64
    /// Latest event time added: the state empties a window length after it.
    var lastAdded: Int64
    /// Decayed weight of the events added, whichever features they had.
    var events: Double
    /// Per feature: decayed weight of the events that had a value for it.
    var totals: ContiguousArray<Double>
    /// All features' values in one array (one allocation per user), in arrival order.
    var slots: ContiguousArray<FrequencySlot>
    /// Slot positions by (feature, value), for the population's hundreds of values; derived
    /// from `slots` (never stored), nil for a user's few values, which a scan finds faster.
    private var index: Index?

    private struct Index: Sendable {
        var positions: [FrequencySlot.Identity: Int] = [:]
        var held: [Int]
    }

    static let indexedAbove = 16

    init(features: Int, at t: Int64) {
        ref = t
        lastAdded = t
        events = 0
        totals = ContiguousArray(repeating: 0, count: features)
        slots = []
    }

    static let rescaleAfter = 16.0

    /// 2^((t − ref)/h): what an event at t adds to the stored numbers.
    @inline(__always)
    func unit(at t: Int64, halfLife h: Int64) -> Double {
        exp2(Double(t &- ref) / Double(h))
    }

    /// The actual weights at time t are the stored ones times this.
    @inline(__always)
    func scale(at t: Int64, halfLife h: Int64) -> Double {
        exp2(-Double(t &- ref) / Double(h))
    }

    /// Adds one event whose feature values are `values` (nil: the event has none).
    mutating func add(time t: Int64, _ values: [ExactKey?], spec: RiskSpec) {
        if Double(t &- ref) / Double(spec.halfLife) > Self.rescaleAfter { rescale(to: t, halfLife: spec.halfLife) }
        let w = unit(at: t, halfLife: spec.halfLife)
        events += w
        lastAdded = max(lastAdded, t)
        for (f, value) in values.enumerated() where f < totals.count {
            guard let value else { continue }
            totals[f] += w
            if let i = position(feature: f, of: value) {
                slots[i].weight += w
                continue
            }
            if index == nil && spec.slotCapacity > Self.indexedAbove { rebuildIndex() }
            let held = index?.held[f] ?? slots.reduce(0) { $0 + (Int($1.feature) == f ? 1 : 0) }
            if held >= spec.slotCapacity { dropLightest(feature: UInt8(f), capacity: spec.slotCapacity) }
            index?.positions[FrequencySlot.Identity(feature: UInt8(f), value: value)] = slots.count
            index?.held[f] += 1
            slots.append(FrequencySlot(feature: UInt8(f), value: value, weight: w))
        }
    }

    @inline(__always)
    func position(feature f: Int, of value: ExactKey) -> Int? {
        if let index { return index.positions[FrequencySlot.Identity(feature: UInt8(f), value: value)] }
        return slots.firstIndex { Int($0.feature) == f && $0.value == value }
    }

    /// Stored weight of one value (0 when not held).
    func weight(feature f: Int, of value: ExactKey) -> Double {
        position(feature: f, of: value).map { slots[$0].weight } ?? 0
    }

    private mutating func rebuildIndex() {
        var m = Index(held: Array(repeating: 0, count: totals.count))
        m.positions.reserveCapacity(slots.count)
        for (i, s) in slots.enumerated() {
            m.positions[FrequencySlot.Identity(feature: s.feature, value: s.value)] = i
            m.held[Int(s.feature)] += 1
        }
        index = m
    }

    private mutating func dropLightest(feature f: UInt8, capacity: Int) {
        let drop = max(1, capacity / 8)
        var mine = slots.indices.filter { slots[$0].feature == f }
        mine.sort { a, b in
            let x = slots[a], y = slots[b]
            return x.weight != y.weight ? x.weight < y.weight : ExactKey.less(x.value.string, y.value.string)
        }
        let gone = Set(mine.prefix(drop))
        var kept = ContiguousArray<FrequencySlot>()
        kept.reserveCapacity(slots.count - gone.count + 1)
        for i in slots.indices where !gone.contains(i) { kept.append(slots[i]) }
        slots = kept
        if index != nil { rebuildIndex() }
    }

    private mutating func rescale(to t: Int64, halfLife h: Int64) {
        let s = scale(at: t, halfLife: h)
        for i in slots.indices { slots[i].weight *= s }
        for f in totals.indices { totals[f] *= s }
        events *= s
        ref = t
    }

    /// For dumps: per feature, value → current weight at `t`, heaviest first.
    func summary(at t: Int64, spec: RiskSpec) -> Value {
        let s = scale(at: t, halfLife: spec.halfLife)
        var out = ValueMap()
        out[.string("events")] = .double(events * s)
        var features = ValueMap()
        for (f, name) in spec.features.enumerated() where f < totals.count {
            var values = ValueMap()
            let mine = slots.filter { Int($0.feature) == f }.sorted {
                $0.weight != $1.weight ? $0.weight > $1.weight : ExactKey.less($0.value.string, $1.value.string)
            }
            for slot in mine { values[.string(slot.value.string)] = .double(slot.weight * s) }
            features[.string(name)] = .map(ValueMap([("total", .double(totals[f] * s)), ("values", .map(values))]))
        }
        out[.string("features")] = .map(features)
        return .map(out)
    }

    func write(to w: inout BinaryWriter) {
        w.writeVarInt(ref)
        w.writeVarInt(lastAdded)
        w.writeDouble(events)
        w.writeVarUInt(UInt64(totals.count))
        for t in totals { w.writeDouble(t) }
        w.writeVarUInt(UInt64(slots.count))
        for s in slots {
            w.writeByte(s.feature)
            w.writeString(s.value.string)
            w.writeDouble(s.weight)
        }
    }

    init(from r: inout BinaryReader) throws(BinaryDecodingError) {
        ref = try r.readVarInt()
        lastAdded = try r.readVarInt()
        events = try r.readDouble()
        let n = Int(try r.readVarUInt(maximum: UInt64(RiskSpec.maxFeatures), "risk features"))
        totals = []
        for _ in 0..<n { totals.append(try r.readDouble()) }
        let m = try r.readCount(minimumItemSize: 10, "risk values")
        slots = []
        slots.reserveCapacity(m)
        var seen = Set<FrequencySlot.Identity>()
        for _ in 0..<m {
            let f = try r.readByte()
            guard Int(f) < n else { throw r.error(.invalidValue, "risk value of feature \(f) out of range") }
            let value = ExactKey(try r.readString())
            let weight = try r.readDouble()
            guard weight.isFinite, weight > 0 else { throw r.error(.invalidValue, "risk weight \(weight) is not positive") }
            guard seen.insert(FrequencySlot.Identity(feature: f, value: value)).inserted else {
                throw r.error(.invalidValue, "duplicate risk value")
            }
            slots.append(FrequencySlot(feature: f, value: value, weight: weight))
        }
        guard events.isFinite, events > 0, totals.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw r.error(.invalidValue, "risk totals out of range")
        }
    }
}

extension FrequencySlot {
    struct Identity: Hashable {
        var feature: UInt8
        var value: ExactKey
    }
}

extension FrequencyState: Equatable {
    /// The index is derived: equal slots make equal states.
    static func == (a: FrequencyState, b: FrequencyState) -> Bool {
        a.ref == b.ref && a.lastAdded == b.lastAdded && a.events == b.events && a.totals == b.totals && a.slots == b.slots
    }
}
