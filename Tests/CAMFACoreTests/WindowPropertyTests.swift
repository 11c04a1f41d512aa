import Foundation
import CAMFATestSupport
import Testing
@testable import CAMFACore

/// Brute force by definition: keeps every accepted event and recomputes each aggregate
/// from the events whose bucket is inside the window.
struct ReferenceWindow {
    let spec: WindowSpec
    var end: Int64 = .min
    var events: [(time: Int64, seq: Int, value: Value)] = []
    var seq = 0

    init(spec: WindowSpec) { self.spec = spec }

    mutating func advance(to t: Int64) { end = max(end, t) }

    mutating func add(_ t: Int64, _ v: Value) -> AddOutcome {
        if t > end { end = t } else if t < end - spec.allowedLateness { return .late }
        events.append((t, seq, v))
        seq += 1
        return .added
    }

    func bucket(_ t: Int64) -> Int64 { Int64((Double(t) / Double(spec.resolution)).rounded(.down)) }

    var live: [(time: Int64, seq: Int, value: Value)] {
        let cutoff = bucket(end) - spec.length / spec.resolution
        return events.filter { bucket($0.time) > cutoff }.sorted { ($0.time, $0.seq) < ($1.time, $1.seq) }
    }

    /// The test streams use small integral numbers, strings and bools only, so this
    /// spelling of CEL equality is enough.
    static func key(_ v: Value) -> Value? {
        switch v {
        case .int: return v
        case .uint(let u): return .int(Int64(u))
        case .double(let d): return d == d.rounded() ? .int(Int64(d)) : v
        case .string, .bool, .null: return v
        default: return nil
        }
    }

    /// Profiles report maps, so only CEL map-key types take part.
    static func mapKey(_ v: Value) -> Value? {
        switch key(v) {
        case .some(.double), .some(.null), .none: return nil
        case let k: return k
        }
    }

    /// Events the aggregation looks at; the others cannot keep a window non-empty.
    var relevant: [(time: Int64, seq: Int, value: Value)] {
        switch spec.aggregation {
        case .sum, .avg, .min, .max: return live.filter { Self.number($0.value) != nil }
        case .distinctCount: return live.filter { Self.key($0.value) != nil }
        case .profile: return live.filter { Self.mapKey($0.value) != nil }
        default: return live
        }
    }

    static func keyString(_ v: Value) -> String { String(describing: binaryEncoding(v)) }

    static func number(_ v: Value) -> Double? {
        switch v {
        case .int(let i): return Double(i)
        case .uint(let u): return Double(u)
        case .double(let d): return d.isFinite ? d : nil
        default: return nil
        }
    }

    var current: Value {
        let l = live
        switch spec.aggregation {
        case .count: return .int(Int64(l.count))
        case .sum: return .double(l.compactMap { Self.number($0.value) }.reduce(0, +))
        case .avg:
            let xs = l.compactMap { Self.number($0.value) }
            return xs.isEmpty ? .null : .double(xs.reduce(0, +) / Double(xs.count))
        case .min: return l.compactMap { Self.number($0.value) }.min().map { .double($0) } ?? .null
        case .max: return l.compactMap { Self.number($0.value) }.max().map { .double($0) } ?? .null
        case .distinctCount: return .int(Int64(Set(l.compactMap { Self.key($0.value).map(Self.keyString) }).count))
        case .first: return l.first?.value ?? .null
        case .last: return l.last?.value ?? .null
        case .previous: return l.count >= 2 ? l[l.count - 2].value : .null
        case .risk:
            return .null  // event-dependent: RiskScoreTests judges it through the engine
        case .profile:
            var counts: [String: (key: Value, count: Int64, latest: (Int64, Int))] = [:]
            for e in l {
                guard let k = Self.mapKey(e.value) else { continue }
                let ks = Self.keyString(k)
                let old = counts[ks] ?? (k, 0, (Int64.min, -1))
                // Events come sorted by (time, seq), so the last one seen is the latest.
                counts[ks] = (k, old.count + 1, (e.time, e.seq))
            }
            let ordered = counts.values.sorted { a, b in
                a.count != b.count ? a.count > b.count : a.latest > b.latest
            }
            var m = ValueMap()
            for x in ordered.prefix(spec.profileTop) { m[x.key] = .int(x.count) }
            return .map(m)
        }
    }
}

func closeEnough(_ a: Value, _ b: Value) -> Bool {
    if case .double(let x) = a, case .double(let y) = b {
        return abs(x - y) <= 1e-9 * max(1, abs(x), abs(y))
    }
    return sameValue(a, b)
}

enum StreamOp {
    case advance(Int64)
    case event(Int64, Value)
}

struct RandomStream {
    var spec: WindowSpec
    var ops: [StreamOp]

    /// `approximate` shrinks the distinct limit and the profile capacity so that the
    /// sketch and Space-Saving replacement are exercised (no brute-force comparison).
    static func make(seed: UInt64, approximate: Bool = false) -> RandomStream {
        var rng = SeededRandom(seed: seed)
        let agg = Aggregation.windowed[Int(seed % UInt64(Aggregation.windowed.count))]
        let length = [10, 60, 100, 1_000][Int.random(in: 0..<4, using: &rng)] as Int64
        let divisors = (1...length).filter { length % $0 == 0 && $0 <= length / 2 }
        let resolution = Bool.random(using: &rng) ? 1 : divisors.randomElement(using: &rng)!
        let lateness = [0, 0, length / 4, length * 2][Int.random(in: 0..<4, using: &rng)]
        // Few enough values that the profile stays exact (capacity 16 ≥ 9 values).
        let top = Int.random(in: 1...4, using: &rng)
        let spec = WindowSpec(
            length: length, aggregation: agg, resolution: resolution, allowedLateness: lateness,
            distinctExactLimit: approximate ? 4 : 1_000, profileTop: top, profileCapacity: approximate ? 3 : 16)
        var pool: [Value] = [
            .int(1), .int(2), .uint(2), .double(2.0), .double(0.5), .int(-7), .string("a"), .string("b"),
            .bool(true), .null, .string("c"), .double(1e6),
        ]
        // Half the distinct-count streams see enough values to leave the small
        // representation (more than 16 live values).
        if agg == .distinctCount && seed % 20 < 10 { pool += (0..<40).map { .string("k\($0)") } }
        var ops: [StreamOp] = []
        var t = Int64.random(in: -2_000...2_000, using: &rng)
        for _ in 0..<Int.random(in: 20...160, using: &rng) {
            switch Int.random(in: 0..<10, using: &rng) {
            case 0:
                t += Int64.random(in: 0...(length * 2), using: &rng)
                ops.append(.advance(t))
            case 1, 2:
                // Out of order: sometimes within lateness, sometimes beyond.
                let back = Int64.random(in: 0...(max(lateness, length / 2) + 3), using: &rng)
                ops.append(.event(t - back, pool.randomElement(using: &rng)!))
            default:
                t += Int64.random(in: 0...(length / 3), using: &rng)
                ops.append(.event(t, pool.randomElement(using: &rng)!))
            }
        }
        return RandomStream(spec: spec, ops: ops)
    }
}

/// Applies one op the way the engine does and returns what it would read.
func apply(_ op: StreamOp, to s: inout WindowState, spec: WindowSpec) -> (AddOutcome?, Value, Value) {
    switch op {
    case .advance(let t):
        s.advance(to: t, spec: spec)
        let v = s.current(spec: spec)
        return (nil, v, v)
    case .event(let t, let v):
        s.advance(to: t, spec: spec)
        let before = s.current(spec: spec)
        let o = s.add(time: t, value: v, spec: spec)
        return (o, before, s.current(spec: spec))
    }
}

@Suite("Window properties")
struct WindowPropertyTests {
    @Test func agreesWithTheBruteForceModelAtEveryStep() {
        var steps = 0, lates = 0
        for seed in UInt64(1)...200 {
            let stream = RandomStream.make(seed: seed)
            let spec = stream.spec
            var s = WindowState()
            var ref = ReferenceWindow(spec: spec)
            for (i, op) in stream.ops.enumerated() {
                let (outcome, before, after) = apply(op, to: &s, spec: spec)
                switch op {
                case .advance(let t):
                    ref.advance(to: t)
                case .event(let t, let v):
                    ref.advance(to: t)
                    let expectedBefore = ref.current
                    #expect(closeEnough(before, expectedBefore), "seed \(seed) step \(i) \(spec.aggregation) before: \(before) vs \(expectedBefore)")
                    let o = ref.add(t, v)
                    #expect(outcome == o, "seed \(seed) step \(i) outcome")
                    if o == .late { lates += 1 }
                }
                let expected = ref.current
                #expect(closeEnough(after, expected), "seed \(seed) step \(i) \(spec.aggregation): \(after) vs \(expected)")
                #expect(s.end == ref.end)
                #expect(s.isEmpty(spec: spec) == ref.relevant.isEmpty, "seed \(seed) step \(i) isEmpty")
                steps += 1
            }
        }
        #expect(steps > 10_000)
        #expect(lates > 100)
    }

    @Test func restoreThenContinueEqualsNeverStopping() throws {
        var sketches = 0, fullProfiles = 0
        for seed in UInt64(1)...200 {
            let stream = RandomStream.make(seed: seed &* 7919, approximate: seed % 3 == 0)
            let spec = stream.spec
            var rng = SeededRandom(seed: seed)
            let cut = Int.random(in: 0...stream.ops.count, using: &rng)
            var s = WindowState()
            for op in stream.ops[..<cut] { _ = apply(op, to: &s, spec: spec) }
            if case .distinct(.sketch) = s.core { sketches += 1 }
            if case .profile(let p) = s.core, p.slots.count == 3 { fullProfiles += 1 }
            var w = BinaryWriter()
            s.write(to: &w)
            var r = BinaryReader(w.bytes)
            var restored = try WindowState(from: &r)
            try r.expectEnd()
            #expect(restored == s, "seed \(seed)")
            var w2 = BinaryWriter()
            restored.write(to: &w2)
            #expect(w2.bytes == w.bytes, "seed \(seed): re-encoding differs")
            for op in stream.ops[cut...] {
                let a = apply(op, to: &s, spec: spec)
                let b = apply(op, to: &restored, spec: spec)
                #expect(a.0 == b.0 && sameValue(a.1, b.1) && sameValue(a.2, b.2), "seed \(seed)")
            }
            #expect(restored == s, "seed \(seed) after continuing")
        }
        // The approximate structures were among what got restored.
        #expect(sketches > 0 && fullProfiles > 0)
    }

    /// States of every kind, including a sketch and an out-of-order profile.
    static func sampleStates() -> [(WindowSpec, WindowState)] {
        var out: [(WindowSpec, WindowState)] = [(WindowSpec(length: 10, aggregation: .count), WindowState())]
        for agg in Aggregation.windowed {
            let spec = WindowSpec(length: 1_000, aggregation: agg, resolution: 10, allowedLateness: 500, distinctExactLimit: 20)
            var s = WindowState()
            for i in 0..<60 {
                let t = Int64(i * 37 % 400 + i * 10)
                let v: Value = i % 4 == 0 ? .string("v\(i % 7)") : i % 4 == 1 ? .double(Double(i) / 3) : .int(Int64(i % 5))
                s.advance(to: t, spec: spec)
                _ = s.add(time: t, value: v, spec: spec)
            }
            out.append((spec, s))
        }
        return out
    }

    @Test func everyTruncationOfAStateThrows() {
        for (_, s) in Self.sampleStates() {
            var w = BinaryWriter()
            s.write(to: &w)
            #expect(w.bytes.count > 2)
            for cut in 0..<w.bytes.count {
                var r = BinaryReader(Array(w.bytes[0..<cut]))
                #expect(throws: BinaryDecodingError.self, "cut \(cut) of \(w.bytes.count)") { _ = try WindowState(from: &r) }
            }
        }
    }

    @Test func corruptedStatesThrowOrLoadSomethingConsistent() {
        var rng = SeededRandom(seed: 99)
        var rejected = 0, total = 0
        for (spec, s) in Self.sampleStates() {
            var w = BinaryWriter()
            s.write(to: &w)
            for _ in 0..<400 {
                var b = w.bytes
                b[Int.random(in: 0..<b.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                var r = BinaryReader(b)
                total += 1
                do {
                    var loaded = try WindowState(from: &r)
                    // Whatever loads must keep working and round-trip.
                    var w2 = BinaryWriter()
                    loaded.write(to: &w2)
                    var r2 = BinaryReader(w2.bytes)
                    #expect(try WindowState(from: &r2) == loaded)
                    loaded.advance(to: loaded.end == .min ? 0 : loaded.end > Int64.max - 10_000 ? .max : loaded.end + 10_000, spec: spec)
                    _ = loaded.add(time: loaded.end, value: .int(1), spec: spec)
                    _ = loaded.current(spec: spec)
                } catch {
                    rejected += 1
                    #expect(!error.message.isEmpty)
                }
            }
        }
        #expect(rejected > total / 4)
    }

    @Test func unknownVersionIsRefused() {
        var w = BinaryWriter()
        WindowState().write(to: &w)
        var b = w.bytes
        b[0] = 2
        var r = BinaryReader(b)
        do {
            _ = try WindowState(from: &r)
            Issue.record("loaded")
        } catch {
            #expect(error.code == .unsupportedVersion)
        }
    }
}

extension Aggregation {
    /// The aggregations that are a function of the window alone; `risk` also reads the
    /// event and the population (RiskScoreTests).
    static let windowed = allCases.filter { $0 != .risk }
}
