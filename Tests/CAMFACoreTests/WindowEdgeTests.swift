import CAMFATestSupport
import Testing
@testable import CAMFACore

func exactSpec(_ a: Aggregation, length: Int64 = 1000, resolution: Int64 = 1, lateness: Int64 = 0, top: Int = 5, capacity: Int = 16) -> WindowSpec {
    WindowSpec(length: length, aggregation: a, resolution: resolution, allowedLateness: lateness, profileTop: top, profileCapacity: capacity)
}

/// What the engine does per event: advance, then add.
@discardableResult
func feed(_ s: inout WindowState, _ spec: WindowSpec, _ t: Int64, _ v: Value) -> AddOutcome {
    s.advance(to: t, spec: spec)
    return s.add(time: t, value: v, spec: spec)
}

func profileMap(_ pairs: [(Value, Int64)]) -> Value {
    var m = ValueMap()
    for (k, c) in pairs { m[k] = .int(c) }
    return .map(m)
}

func expectValue(_ actual: Value, _ expected: Value, _ context: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(sameValue(actual, expected), "\(context): got \(actual), expected \(expected)", sourceLocation: sourceLocation)
}

@Suite("Window edges")
struct WindowEdgeTests {
    /// Expected values with events 3@0 and 5@1, read at E = 999 (both in), E = 1000 (the
    /// event at E − length is out) and E = 1001 (empty).
    static let boundaryCases: [(Aggregation, Value, Value, Value)] = [
        (.count, .int(2), .int(1), .int(0)),
        (.sum, .double(8), .double(5), .double(0)),
        (.avg, .double(4), .double(5), .null),
        (.min, .double(3), .double(5), .null),
        (.max, .double(5), .double(5), .null),
        (.distinctCount, .int(2), .int(1), .int(0)),
        (.first, .int(3), .int(5), .null),
        (.last, .int(5), .int(5), .null),
        (.previous, .int(3), .null, .null),
        (.profile, profileMap([(.int(5), 1), (.int(3), 1)]), profileMap([(.int(5), 1)]), profileMap([])),
    ]

    @Test(arguments: boundaryCases.indices)
    func eventAtEndMinusLengthIsOutAndOneLaterIsIn(_ i: Int) {
        let (agg, both, onlyLater, empty) = Self.boundaryCases[i]
        let spec = exactSpec(agg)
        var s = WindowState()
        expectValue(s.current(spec: spec), empty, "\(agg) fresh")
        #expect(feed(&s, spec, 0, .int(3)) == .added)
        #expect(feed(&s, spec, 1, .int(5)) == .added)
        s.advance(to: 999, spec: spec)
        expectValue(s.current(spec: spec), both, "\(agg) at 999")
        s.advance(to: 1000, spec: spec)
        expectValue(s.current(spec: spec), onlyLater, "\(agg) at 1000")
        #expect(!s.isEmpty(spec: spec))
        s.advance(to: 1001, spec: spec)
        expectValue(s.current(spec: spec), empty, "\(agg) at 1001")
        #expect(s.isEmpty(spec: spec))
        #expect(s.end == 1001)
        // Never moves backwards.
        s.advance(to: 5, spec: spec)
        #expect(s.end == 1001)
    }

    /// Events 5@1000 in order, 3@950 out of order within a lateness of 100, 100@899
    /// beyond it.
    static let latenessCases: [(Aggregation, Value)] = [
        (.count, .int(2)), (.sum, .double(8)), (.avg, .double(4)), (.min, .double(3)), (.max, .double(5)),
        (.distinctCount, .int(2)), (.first, .int(3)), (.last, .int(5)), (.previous, .int(3)),
        (.profile, profileMap([(.int(5), 1), (.int(3), 1)])),
    ]

    @Test(arguments: latenessCases.indices)
    func outOfOrderWithinLatenessCountsAndBeyondIsLate(_ i: Int) {
        let (agg, expected) = Self.latenessCases[i]
        let spec = exactSpec(agg, lateness: 100)
        var s = WindowState()
        #expect(feed(&s, spec, 1000, .int(5)) == .added)
        #expect(feed(&s, spec, 950, .int(3)) == .added)
        #expect(feed(&s, spec, 899, .int(100)) == .late)
        #expect(s.end == 1000)
        expectValue(s.current(spec: spec), expected, "\(agg)")
        // Exactly end − lateness is still accepted.
        var t = WindowState()
        feed(&t, spec, 1000, .int(5))
        #expect(t.add(time: 900, value: .int(1), spec: spec) == .added)
        let zeroLateness = exactSpec(agg)
        var u = WindowState()
        feed(&u, zeroLateness, 1000, .int(5))
        #expect(u.add(time: 999, value: .int(1), spec: zeroLateness) == .late)
        #expect(u.add(time: 1000, value: .int(1), spec: zeroLateness) == .added)
    }

    @Test func lateButAcceptedEventOutsideTheWindowChangesNothing() {
        let spec = exactSpec(.count, length: 1000, lateness: 5000)
        var s = WindowState()
        feed(&s, spec, 10_000, .null)
        #expect(s.add(time: 8_000, value: .null, spec: spec) == .added)
        #expect(s.add(time: 9_000, value: .null, spec: spec) == .added)  // exactly E − length: out
        expectValue(s.current(spec: spec), .int(1))
        #expect(s.add(time: 9_001, value: .null, spec: spec) == .added)
        expectValue(s.current(spec: spec), .int(2))
    }

    @Test func coarseResolutionKeepsAnEventUntilItsBucketLeaves() {
        let spec = WindowSpec(length: 10_000, aggregation: .count, resolution: 1_000)
        var s = WindowState()
        feed(&s, spec, 1_500, .null)  // bucket 1
        feed(&s, spec, 1_999, .null)  // bucket 1
        feed(&s, spec, 2_000, .null)  // bucket 2
        s.advance(to: 10_999, spec: spec)  // buckets (0, 10]
        expectValue(s.current(spec: spec), .int(3))
        s.advance(to: 11_000, spec: spec)  // buckets (1, 11]
        expectValue(s.current(spec: spec), .int(1))
        s.advance(to: 11_999, spec: spec)
        expectValue(s.current(spec: spec), .int(1))
        s.advance(to: 12_000, spec: spec)
        #expect(s.isEmpty(spec: spec))
    }

    @Test func negativeTimesBucketByFloor() {
        let spec = WindowSpec(length: 2_000, aggregation: .count, resolution: 1_000)
        var s = WindowState()
        feed(&s, spec, -1, .null)  // bucket −1, not 0
        s.advance(to: 999, spec: spec)  // buckets (−2, 0]
        expectValue(s.current(spec: spec), .int(1))
        s.advance(to: 1_000, spec: spec)  // buckets (−1, 1]
        #expect(s.isEmpty(spec: spec))
    }

    @Test func defaultResolutions() {
        #expect(WindowSpec(length: 600_000, aggregation: .count).resolution == 1_000)
        #expect(WindowSpec(length: 3_600_000, aggregation: .count).resolution == 1_000)
        #expect(WindowSpec(length: 7_200_000, aggregation: .count).resolution == 60_000)
        #expect(WindowSpec(length: 86_400_000, aggregation: .count).resolution == 60_000)
        #expect(WindowSpec(length: 30 * 86_400_000, aggregation: .profile).resolution == 3_600_000)
        #expect(WindowSpec(length: 1_500, aggregation: .count).resolution == 500)
        #expect(WindowSpec(length: 7, aggregation: .count).resolution == 1)
    }

    @Test func invalidSpecsAreReportedWithCodes() {
        #expect(throws: WindowSpecError.self) { try WindowSpec(validating: 0, aggregation: .count) }
        do {
            _ = try WindowSpec(validating: 1_000, aggregation: .count, resolution: 300)
            Issue.record("accepted")
        } catch {
            #expect(error.code == .resolutionDoesNotDivideLength)
            #expect(error.description.contains("300"))
        }
        do {
            _ = try WindowSpec(validating: 1_000, aggregation: .profile, profileCapacity: 256)
            Issue.record("accepted")
        } catch {
            #expect(error.code == .invalidProfileSize)
        }
        #expect(throws: WindowSpecError.self) { try WindowSpec(validating: 1_000, aggregation: .count, allowedLateness: -1) }
    }

    @Test func numericAggregationsIgnoreNonNumericAndNonFiniteValues() {
        for agg in [Aggregation.sum, .avg, .min, .max] {
            let spec = exactSpec(agg)
            var s = WindowState()
            feed(&s, spec, 1, .string("x"))
            feed(&s, spec, 2, .double(.infinity))
            feed(&s, spec, 3, .double(.nan))
            expectValue(s.current(spec: spec), agg == .sum ? .double(0) : .null, "\(agg)")
            #expect(s.isEmpty(spec: spec))
            feed(&s, spec, 4, .uint(4))
            feed(&s, spec, 5, .double(-1.5))
            let expected: Value = switch agg {
            case .sum: .double(2.5)
            case .avg: .double(1.25)
            case .min: .double(-1.5)
            default: .double(4)
            }
            expectValue(s.current(spec: spec), expected, "\(agg)")
        }
    }

    @Test func minAndMaxSlideToTheNextExtreme() {
        let spec = exactSpec(.max, length: 10)
        var s = WindowState()
        feed(&s, spec, 1, .int(9))
        feed(&s, spec, 2, .int(4))
        feed(&s, spec, 3, .int(7))
        feed(&s, spec, 4, .int(1))
        expectValue(s.current(spec: spec), .double(9))
        s.advance(to: 11, spec: spec)  // the 9 leaves
        expectValue(s.current(spec: spec), .double(7))
        s.advance(to: 13, spec: spec)
        expectValue(s.current(spec: spec), .double(1))
        let minSpec = exactSpec(.min, length: 10)
        var m = WindowState()
        for (t, v) in [(1, 1), (2, 5), (3, 3), (4, 8)] { feed(&m, minSpec, Int64(t), .int(Int64(v))) }
        m.advance(to: 11, spec: minSpec)
        expectValue(m.current(spec: minSpec), .double(3))
    }

    @Test func firstLastPreviousKeepValuesAsGiven() {
        let v: Value = .list([.string("a"), .uint(1)])
        for agg in [Aggregation.first, .last] {
            let spec = exactSpec(agg)
            var s = WindowState()
            feed(&s, spec, 1, v)
            expectValue(s.current(spec: spec), v, "\(agg)")
        }
        let spec = exactSpec(.previous)
        var s = WindowState()
        feed(&s, spec, 1, .uint(7))
        feed(&s, spec, 2, .string("b"))
        feed(&s, spec, 2, .string("c"))  // same time: arrival decides
        expectValue(s.current(spec: spec), .string("b"))
        expectValue(s.current(spec: exactSpec(.last)), .string("c"))
    }

    @Test func nonScalarValuesSurviveACheckpoint() throws {
        var m = ValueMap()
        m[string: "k"] = .list([.int(1), .bytes([9])])
        let spec = exactSpec(.previous)
        var s = WindowState()
        feed(&s, spec, 1, .map(m))
        feed(&s, spec, 2, .timestamp(5))
        var w = BinaryWriter()
        s.write(to: &w)
        var r = BinaryReader(w.bytes)
        let back = try WindowState(from: &r)
        #expect(back == s)
        expectValue(back.current(spec: spec), .map(m))
        expectValue(back.current(spec: exactSpec(.last)), .timestamp(5))
    }

    @Test func distinctUsesCELEqualityOfScalars() {
        let spec = exactSpec(.distinctCount)
        var s = WindowState()
        for v: Value in [.int(1), .uint(1), .double(1.0), .string("1"), .bool(true), .double(1.5), .double(.nan), .double(.nan), .null, .list([])] {
            feed(&s, spec, 5, v)
        }
        // 1 (int/uint/double), "1", true, 1.5, NaN, null; the list is ignored.
        expectValue(s.current(spec: spec), .int(6))
    }

    /// Issue 22: Swift's `String ==` is canonical equivalence, under which "é" and
    /// "e" + U+0301 are one value; to the business system they are two user ids, so
    /// "distinct users from one IP" must count two (an attacker spraying both spellings
    /// would otherwise be counted once). The profile keeps them apart too.
    @Test func canonicallyEquivalentStringsAreDistinct() {
        let spec = exactSpec(.distinctCount)
        var s = WindowState()
        for v in ["\u{E9}", "e\u{301}", "\u{E9}"] { feed(&s, spec, 5, .string(v)) }
        expectValue(s.current(spec: spec), .int(2))
    }

    @Test func distinctSwitchesToTheSketchAboveTheLimitWithinItsErrorBound() {
        let spec = WindowSpec(length: 1_000, aggregation: .distinctCount, resolution: 1, distinctExactLimit: 100)
        var s = WindowState()
        for i in 0..<100 { feed(&s, spec, 1, .string("user-\(i)")) }
        expectValue(s.current(spec: spec), .int(100))
        guard case .distinct(.exact) = s.core else { Issue.record("left exact mode early"); return }
        feed(&s, spec, 1, .string("user-100"))
        guard case .distinct(.sketch) = s.core else { Issue.record("did not switch"); return }
        var rng = SeededRandom(seed: 7)
        // 3 batches of values over 3 000 ms, so the window holds about one batch.
        for batch in 0..<3 {
            let n = [5_000, 20_000, 800][batch]
            for i in 0..<n {
                let t = Int64(batch * 1_000 + 1 + i * 999 / n)
                let v: Value = .string("b\(batch)-\(i)-\(rng.next() % 1_000_000_000)")
                feed(&s, spec, t, v)
                if i % 3 == 0 { feed(&s, spec, t, v) }  // repeats must not count
            }
            s.advance(to: Int64(batch * 1_000 + 1_000), spec: spec)
            guard case .int(let estimate) = s.current(spec: spec) else { Issue.record("not an int"); return }
            let live = n + (batch == 0 ? 101 : 0)  // the first 101 values are still in at 1 000
            let error = abs(Double(estimate) - Double(live)) / Double(live)
            // Three standard errors of 3.3 %.
            #expect(error < 0.1, "batch \(batch): estimate \(estimate) for \(n)")
        }
        s.advance(to: 10_000, spec: spec)
        #expect(s.isEmpty(spec: spec))
        feed(&s, spec, 10_001, .int(1))
        feed(&s, spec, 10_002, .int(2))
        expectValue(s.current(spec: spec), .int(2))
        guard case .distinct(.exact) = s.core else { Issue.record("did not return to exact"); return }
    }

    @Test func sketchEqualityIgnoresItsEvictionHint() throws {
        let spec = WindowSpec(length: 100, aggregation: .distinctCount, resolution: 1, distinctExactLimit: 2)
        var s = WindowState()
        for i in 0..<400 { feed(&s, spec, Int64(i / 4), .int(Int64(i))) }
        var w = BinaryWriter()
        s.write(to: &w)
        var r = BinaryReader(w.bytes)
        var restored = try WindowState(from: &r)
        guard case .distinct(.sketch(let a)) = s.core, case .distinct(.sketch(let b)) = restored.core else {
            Issue.record("not a sketch")
            return
        }
        #expect(a.harmonic == b.harmonic && a.zeros == b.zeros)
        #expect(restored == s)
        for i in 400..<800 {
            let t = Int64(i / 4)
            let x = feed(&s, spec, t, .int(Int64(i)))
            #expect(feed(&restored, spec, t, .int(Int64(i))) == x)
            #expect(sameValue(s.current(spec: spec), restored.current(spec: spec)))
        }
        #expect(restored == s)
    }

    @Test func profileOrdersByCountThenRecency() {
        let spec = exactSpec(.profile, top: 3)
        var s = WindowState()
        for (t, city) in [(1, "Paris"), (2, "Lyon"), (3, "Paris"), (4, "Nice"), (5, "Lyon"), (6, "Oslo")] {
            feed(&s, spec, Int64(t), .string(city))
        }
        expectValue(s.current(spec: spec), profileMap([(.string("Lyon"), 2), (.string("Paris"), 2), (.string("Oslo"), 1)]))
        // Recency is event time: a late Nice@1 counts but leaves Nice's latest at 4.
        let lax = exactSpec(.profile, lateness: 10, top: 3)
        var l = s
        #expect(l.add(time: 1, value: .string("Nice"), spec: lax) == .added)
        expectValue(l.current(spec: lax), profileMap([(.string("Lyon"), 2), (.string("Nice"), 2), (.string("Paris"), 2)]))
        // Values that cannot be map keys are ignored; integral doubles are ints.
        feed(&s, spec, 7, .double(2.5))
        feed(&s, spec, 8, .double(2.0))
        feed(&s, spec, 9, .int(2))
        feed(&s, spec, 10, .uint(2))
        expectValue(s.current(spec: spec), profileMap([(.int(2), 3), (.string("Lyon"), 2), (.string("Paris"), 2)]))
    }

    @Test func profileStandingAgreesWithTheReport() {
        let spec = exactSpec(.profile, top: 2)
        var s = WindowState()
        for (t, city) in [(1, "Paris"), (2, "Lyon"), (3, "Paris"), (4, "Nice"), (5, "Lyon"), (6, "Oslo")] {
            feed(&s, spec, Int64(t), .string(city))
        }
        #expect(s.profileStanding(of: .string("Lyon"), spec: spec)! == (0, 2))
        #expect(s.profileStanding(of: .string("Paris"), spec: spec)! == (1, 2))
        #expect(s.profileStanding(of: .string("Oslo"), spec: spec)! == (2, 1))  // beyond top 2
        #expect(s.profileStanding(of: .string("Nice"), spec: spec)! == (3, 1))
        #expect(s.profileStanding(of: .string("Rome"), spec: spec) == nil)
        #expect(s.profileStanding(of: .string("Lyon"), spec: exactSpec(.count)) == nil)
        s.advance(to: 1_002, spec: spec)  // Paris@1 and Lyon@2 leave: all at 1, by recency
        #expect(s.profileStanding(of: .string("Paris"), spec: spec)! == (3, 1))
        #expect(s.profileStanding(of: .string("Oslo"), spec: spec)! == (0, 1))
        expectValue(s.current(spec: spec), profileMap([(.string("Oslo"), 1), (.string("Lyon"), 1)]))
    }

    @Test func profileReplacesTheWeakestCandidateWhenFull() {
        let spec = exactSpec(.profile, top: 2, capacity: 3)
        var s = WindowState()
        for (t, v) in [(1, "A"), (2, "A"), (3, "A"), (4, "B"), (5, "B"), (6, "C")] { feed(&s, spec, Int64(t), .string(v)) }
        expectValue(s.current(spec: spec), profileMap([(.string("A"), 3), (.string("B"), 2)]))
        // D evicts C (lowest count) and inherits its one event: 2, tied with B, more recent.
        feed(&s, spec, 7, .string("D"))
        expectValue(s.current(spec: spec), profileMap([(.string("A"), 3), (.string("D"), 2)]))
        // E replaces B (count 2, least recent of the lowest).
        feed(&s, spec, 8, .string("E"))
        feed(&s, spec, 9, .string("E"))
        guard case .profile(let p) = s.core else { Issue.record("no profile"); return }
        #expect(p.slots.count == 3)
        // The inherited excess leaves with the victims' events: at 1006 only events
        // after 6 remain (D@7, E@8, E@9); E's slot once held B.
        s.advance(to: 1_006, spec: spec)
        expectValue(s.current(spec: spec), profileMap([(.string("E"), 2), (.string("D"), 1)]))
        s.advance(to: 1_009, spec: spec)
        #expect(s.isEmpty(spec: spec))
    }

    @Test func sparseKeysStayInline() {
        let count = WindowSpec(length: 600_000, aggregation: .count)
        var c = WindowState()
        for t in [1_000, 1_200, 1_999] as [Int64] { feed(&c, count, t, .null) }
        guard case .count(let cs) = c.core else { Issue.record("no count"); return }
        #expect(cs.ring.items.capacity == 0)  // one bucket: nothing on the heap
        expectValue(c.current(spec: count), .int(3))
        feed(&c, count, 2_000, .null)
        guard case .count(let cs2) = c.core else { Issue.record("no count"); return }
        #expect(cs2.ring.count == 1 && cs2.newestCount == 1)
        #expect(MemoryLayout<WindowState>.stride <= 48)

        let distinct = exactSpec(.distinctCount)
        var d = WindowState()
        for i in 0..<16 { feed(&d, distinct, Int64(i), .int(Int64(i % 8))) }
        guard case .distinct(.exact(let small)) = d.core else { Issue.record("no distinct"); return }
        #expect(!small.isLarge && small.ring.count == 8)
        for i in 0..<9 { feed(&d, distinct, 20, .string("x\(i)")) }
        guard case .distinct(.exact(let large)) = d.core else { Issue.record("no distinct"); return }
        #expect(large.isLarge)
        expectValue(d.current(spec: distinct), .int(17))
        d.advance(to: 1_007, spec: distinct)  // values 0..7 seen last at 8..15; 0..7 leave
        expectValue(d.current(spec: distinct), .int(17))
        d.advance(to: 1_015, spec: distinct)
        expectValue(d.current(spec: distinct), .int(9))
    }

    @Test func lastKeepsOneEntryInlineWhilePreviousKeepsTwo() throws {
        let last = exactSpec(.last, lateness: 10)
        var s = WindowState()
        for (t, v) in [(1, "a"), (3, "c"), (2, "b")] as [(Int64, String)] { feed(&s, last, t, .string(v)) }
        guard case .last(let one) = s.core else { Issue.record("no last"); return }
        #expect(one.older == nil)  // nothing a `last` window could ever read again
        expectValue(s.current(spec: last), .string("c"))

        // A pair stored for `previous` (or by a build that kept two for `last`) is read back
        // whole; the next `last` event drops the older entry.
        let previous = exactSpec(.previous)
        var p = WindowState()
        feed(&p, previous, 1, .string("x"))
        feed(&p, previous, 2, .string("y"))
        var w = BinaryWriter()
        p.write(to: &w)
        var r = BinaryReader(w.bytes)
        var back = try WindowState(from: &r)
        #expect(back == p)
        expectValue(back.current(spec: previous), .string("x"))
        feed(&back, last, 4, .string("z"))
        guard case .last(let trimmed) = back.core else { Issue.record("no last"); return }
        #expect(trimmed.older == nil)
        expectValue(back.current(spec: last), .string("z"))
        expectValue(back.current(spec: previous), .null)
    }

    @Test func profileArrivalRanksAreRenumberedBeforeOverflowing() {
        let spec = exactSpec(.profile, top: 3)
        var s = WindowState()
        for (t, v) in [(5, "A"), (5, "B"), (5, "C")] { feed(&s, spec, Int64(t), .string(v)) }
        guard case .profile(var p) = s.core else { Issue.record("no profile"); return }
        p.slots[0].lastSeq = UInt32.max - 2  // A
        p.slots[1].lastSeq = UInt32.max      // B, the latest
        p.slots[2].lastSeq = UInt32.max - 1  // C
        s.core = .profile(p)
        expectValue(s.current(spec: spec), profileMap([(.string("B"), 1), (.string("C"), 1), (.string("A"), 1)]))
        feed(&s, spec, 5, .string("D"))  // forces a renumbering; D is now the latest
        guard case .profile(let q) = s.core else { Issue.record("no profile"); return }
        #expect(q.slots.map(\.lastSeq) == [1, 3, 2, 4])
        expectValue(s.current(spec: spec), profileMap([(.string("D"), 1), (.string("B"), 1), (.string("C"), 1)]))
    }

    @Test(arguments: Aggregation.windowed)
    func extremeTimesNeitherTrapNorBreakCheckpoints(_ agg: Aggregation) throws {
        for resolution: Int64 in [1, 1_000] {
            let spec = WindowSpec(length: 1_000_000, aggregation: agg, resolution: resolution, allowedLateness: .max)
            var s = WindowState()
            for t: Int64 in [.min, .min + 1, -1, 0, .max - 1] {
                #expect(feed(&s, spec, t, .int(t % 7)) == .added)
                #expect(s.add(time: t, value: .int(1), spec: spec) == .added)
                #expect(s.add(time: .min, value: .int(1), spec: spec) == (t <= -1 ? .added : .late))
                var w = BinaryWriter()
                s.write(to: &w)
                var r = BinaryReader(w.bytes)
                #expect(try WindowState(from: &r) == s)
            }
            feed(&s, spec, .max, .int(3))
            #expect(!s.isEmpty(spec: spec))
            expectValue(WindowState().current(spec: spec), WindowState.emptyValue(agg))
        }
    }

    @Test func changingTheAggregationRestartsTheState() {
        let count = exactSpec(.count)
        let sum = exactSpec(.sum)
        var s = WindowState()
        feed(&s, count, 1, .int(4))
        expectValue(s.current(spec: sum), .double(0))
        feed(&s, sum, 2, .int(5))
        expectValue(s.current(spec: sum), .double(5))
        expectValue(s.current(spec: count), .int(0))
    }
}
