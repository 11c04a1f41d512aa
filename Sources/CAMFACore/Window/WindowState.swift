/// The state of one sliding window for one key (semantics: WindowSemantics.swift).
///
/// The state does not store its spec, to stay small; the engine passes the same spec
/// on every call. If a different aggregation's spec is passed (a policy changed), the
/// state restarts empty for the new aggregation instead of misreading the old data.
public struct WindowState: Sendable, Equatable {
    /// The window end: the latest time it was advanced to (`Int64.min` before any).
    public private(set) var end: Int64 = .min
    var core: Core = .none

    /// One case per kind of storage; `sum` serves sum and avg, `last` serves last and
    /// previous.
    enum Core: Sendable, Equatable {
        case none
        case count(CountState)
        case sum(SumState)
        case min(ExtremeState)
        case max(ExtremeState)
        case first(FirstState)
        case last(LastState)
        case distinct(DistinctState)
        case profile(ProfileState)
        /// Boxed: inline it would grow every window state past 48 bytes, for the one
        /// statistic per user that has it.
        indirect case frequencies(FrequencyState)
    }

    public init() {}

    /// Format of `write(to:)`; bump on any change and keep reading older versions.
    public static let formatVersion: UInt8 = 1

    /// Highest bucket that is out of the window ending at `end`.
    @inline(__always)
    private func cutoff(_ spec: WindowSpec) -> Int64 {
        let b = spec.bucket(end)
        let span = spec.bucketSpan
        return b < Int64.min + span ? Int64.min : b - span
    }

    public mutating func advance(to time: Int64, spec: WindowSpec) {
        guard time > end else { return }
        let before = end == .min ? Int64.min : cutoff(spec)
        end = time
        let c = cutoff(spec)
        if c != before { evict(through: c, spec: spec) }
    }

    private mutating func evict(through c: Int64, spec: WindowSpec) {
        // Each case takes the payload out (leaving .none) so that it is uniquely
        // referenced and mutated in place rather than copied.
        switch core {
        case .none: return
        case .count(var s):
            core = .none; s.evict(through: c); core = s.isEmpty ? .none : .count(s)
        case .sum(var s):
            core = .none; s.evict(through: c); core = s.ring.isEmpty ? .none : .sum(s)
        case .min(var s):
            core = .none; s.ring.evict(through: c); core = s.ring.isEmpty ? .none : .min(s)
        case .max(var s):
            core = .none; s.ring.evict(through: c); core = s.ring.isEmpty ? .none : .max(s)
        case .first(var s):
            core = .none; s.ring.evict(through: c); core = s.ring.isEmpty ? .none : .first(s)
        case .last(var s):
            core = .none; s.evict(through: c, spec: spec); core = s.isEmpty ? .none : .last(s)
        case .distinct(var s):
            core = .none; s.evict(through: c); core = s.isEmpty ? .none : .distinct(s)
        case .profile(var s):
            core = .none; s.evict(through: c); core = s.isEmpty ? .none : .profile(s)
        case .frequencies(let s):
            // Decay needs no pass; the whole history goes a window after its latest event.
            if spec.bucket(s.lastAdded) <= c { core = .none }
        }
    }

    /// Moves the window to an event at `time` and returns its bucket, or the outcome when
    /// the event leaves the window unchanged.
    private enum Admission { case bucket(Int64), done(AddOutcome) }

    private mutating func admit(_ time: Int64, spec: WindowSpec) -> Admission {
        if time > end {
            advance(to: time, spec: spec)
        } else if time < (end < Int64.min + spec.allowedLateness ? Int64.min : end - spec.allowedLateness) {
            return .done(.late)
        }
        let b = spec.bucket(time)
        // Accepted but already out of the window: in-order arrival would have counted
        // it and evicted it by now, so there is nothing to do.
        return b > cutoff(spec) ? .bucket(b) : .done(.added)
    }

    public mutating func add(time: Int64, value: Value, spec: WindowSpec) -> AddOutcome {
        let b: Int64
        switch admit(time, spec: spec) {
        case .bucket(let bucket): b = bucket
        case .done(let outcome): return outcome
        }

        switch spec.aggregation {
        case .count:
            var s: CountState
            if case .count(let x) = core { s = x } else { s = CountState() }
            core = .none; s.add(bucket: b); core = .count(s)
        case .sum, .avg:
            guard let x = windowNumber(value) else { if !matches(spec) { core = .none }; return .added }
            var s: SumState
            if case .sum(let y) = core { s = y } else { s = SumState() }
            core = .none; s.add(bucket: b, x); core = .sum(s)
        case .min:
            guard let x = windowNumber(value) else { if !matches(spec) { core = .none }; return .added }
            var s: ExtremeState
            if case .min(let y) = core { s = y } else { s = ExtremeState() }
            core = .none; s.add(bucket: b, x, isMax: false); core = .min(s)
        case .max:
            guard let x = windowNumber(value) else { if !matches(spec) { core = .none }; return .added }
            var s: ExtremeState
            if case .max(let y) = core { s = y } else { s = ExtremeState() }
            core = .none; s.add(bucket: b, x, isMax: true); core = .max(s)
        case .first:
            var s: FirstState
            if case .first(let y) = core { s = y } else { s = FirstState() }
            core = .none; s.add(bucket: b, time: time, value); core = .first(s)
        case .last, .previous:
            var s: LastState
            if case .last(let y) = core { s = y } else { s = LastState() }
            core = .none; s.add(time: time, value, keep: spec.aggregation == .previous ? 2 : 1); core = .last(s)
        case .distinctCount:
            guard let k = WindowKey(value) else { if !matches(spec) { core = .none }; return .added }
            var s: DistinctState
            if case .distinct(let y) = core { s = y } else { s = .exact(ExactDistinct()) }
            core = .none; s.add(bucket: b, k, limit: spec.distinctExactLimit); core = .distinct(s)
        case .profile:
            guard let k = WindowKey(value), k.isMapKey else { if !matches(spec) { core = .none }; return .added }
            var s: ProfileState
            if case .profile(let y) = core { s = y } else { s = ProfileState() }
            core = .none; s.add(bucket: b, time: time, k, capacity: spec.profileCapacity); core = .profile(s)
        case .risk:
            break  // features come through `add(time:features:spec:)`
        }
        return .added
    }

    /// Risk: adds one event's feature values (nil where it has none).
    mutating func add(time: Int64, features: [ExactKey?], spec: WindowSpec) -> AddOutcome {
        guard let risk = spec.risk else { return .added }
        if case .done(let outcome) = admit(time, spec: spec) { return outcome }
        var s: FrequencyState
        if case .frequencies(let y) = core { s = y } else { s = FrequencyState(features: risk.features.count, at: time) }
        core = .none; s.add(time: time, features, spec: risk); core = .frequencies(s)
        return .added
    }

    /// Risk: the frequencies, when the window holds any.
    var frequencies: FrequencyState? {
        if case .frequencies(let s) = core { return s }
        return nil
    }

    /// Whether the stored data belongs to the spec's aggregation (an empty state
    /// belongs to every one).
    private func matches(_ spec: WindowSpec) -> Bool {
        switch (core, spec.aggregation) {
        case (.none, _), (.count, .count), (.sum, .sum), (.sum, .avg), (.min, .min), (.max, .max),
            (.first, .first), (.last, .last), (.last, .previous), (.distinct, .distinctCount),
            (.profile, .profile), (.frequencies, .risk):
            return true
        default:
            return false
        }
    }

    public func current(spec: WindowSpec) -> Value {
        switch (core, spec.aggregation) {
        case (.count(let s), .count): return .int(s.total)
        case (.sum(let s), .sum): return .double(s.sum)
        case (.sum(let s), .avg): return .double(s.sum / Double(s.count))
        case (.min(let s), .min), (.max(let s), .max): return .double(s.ring.first!.value)
        case (.first(let s), .first): return s.ring.first!.value.value
        case (.last(let s), .last): return s.newest!.value.value
        case (.last(let s), .previous): return s.older?.value.value ?? .null
        case (.distinct(let s), .distinctCount): return .int(s.count)
        case (.profile(let s), .profile): return s.current(top: spec.profileTop)
        case (.frequencies(let s), .risk): return spec.risk.map { s.summary(at: end, spec: $0) } ?? .null
        default: return Self.emptyValue(spec.aggregation)
        }
    }

    /// For a profile: the value's position in the report (0 = most frequent) and its
    /// count, or nil when it is not among the candidates. The position can exceed
    /// `profileTop` (then `current` leaves it out). This answers "is this a usual
    /// city?" without building the map `current` returns, which costs far more.
    public func profileStanding(of value: Value, spec: WindowSpec) -> (rank: Int, count: Int64)? {
        guard spec.aggregation == .profile, case .profile(let s) = core, let k = WindowKey(value), k.isMapKey,
            let st = s.standing(of: k)
        else { return nil }
        return (st.rank, st.count)
    }

    static func emptyValue(_ a: Aggregation) -> Value {
        switch a {
        case .count, .distinctCount: return .int(0)
        case .sum: return .double(0)
        case .avg, .min, .max, .first, .last, .previous: return .null
        case .profile, .risk: return .map(ValueMap())
        }
    }

    public func isEmpty(spec: WindowSpec) -> Bool {
        if case .none = core { return true }
        return false
    }

    // MARK: serialization

    public func write(to w: inout BinaryWriter) {
        w.writeByte(Self.formatVersion)
        w.writeVarInt(end)
        switch core {
        case .none: w.writeByte(0)
        case .count(let s): w.writeByte(1); s.write(to: &w)
        case .sum(let s): w.writeByte(2); s.write(to: &w)
        case .min(let s): w.writeByte(3); s.write(to: &w)
        case .max(let s): w.writeByte(4); s.write(to: &w)
        case .first(let s): w.writeByte(5); s.write(to: &w)
        case .last(let s): w.writeByte(6); s.write(to: &w)
        case .distinct(let s): w.writeByte(7); s.write(to: &w)
        case .profile(let s): w.writeByte(8); s.write(to: &w)
        case .frequencies(let s): w.writeByte(9); s.write(to: &w)
        }
    }

    public init(from r: inout BinaryReader) throws(BinaryDecodingError) {
        let version = try r.readByte()
        guard version == Self.formatVersion else {
            throw BinaryDecodingError(.unsupportedVersion, "window state version \(version), this build reads \(Self.formatVersion)", offset: r.offset - 1)
        }
        let end = try r.readVarInt()
        let kindOffset = r.offset
        let core: Core
        switch try r.readByte() {
        case 0: core = .none
        case 1: core = .count(try CountState(from: &r))
        case 2: core = .sum(try SumState(from: &r))
        case 3: core = .min(try ExtremeState(from: &r, isMax: false))
        case 4: core = .max(try ExtremeState(from: &r, isMax: true))
        case 5: core = .first(try FirstState(from: &r))
        case 6: core = .last(try LastState(from: &r))
        case 7: core = .distinct(try DistinctState(from: &r))
        case 8: core = .profile(try ProfileState(from: &r))
        case 9: core = .frequencies(try FrequencyState(from: &r))
        case let k: throw BinaryDecodingError(.invalidTag, "unknown window kind \(k)", offset: kindOffset)
        }
        // Empty storage is always represented as .none, so equality and isEmpty hold.
        let empty: Bool
        switch core {
        case .none: empty = false
        case .count(let s): empty = s.isEmpty
        case .sum(let s): empty = s.ring.isEmpty
        case .min(let s), .max(let s): empty = s.ring.isEmpty
        case .first(let s): empty = s.ring.isEmpty
        case .last(let s): empty = s.isEmpty
        case .distinct(let s): empty = s.isEmpty
        case .profile(let s): empty = s.isEmpty
        case .frequencies: empty = false
        }
        if empty { throw BinaryDecodingError(.invalidValue, "empty window stored as non-empty", offset: kindOffset) }
        self.end = end
        self.core = core
    }
}
