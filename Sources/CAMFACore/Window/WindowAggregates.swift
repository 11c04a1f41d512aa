// Per-aggregation state. Each keeps only what can still influence its result: sparse
// per-bucket entries in a BucketRing, or less. `cutoff` is the highest bucket that is out of
// the window.

/// Numeric reading shared by sum, avg, min and max; non-numeric and non-finite values
/// are ignored so that one bad field cannot poison a running sum forever.
@inline(__always)
func windowNumber(_ v: Value) -> Double? {
    switch v {
    case .int(let i): return Double(i)
    case .uint(let u): return Double(u)
    case .double(let d): return d.isFinite ? d : nil
    default: return nil
    }
}

extension BinaryReader {
    /// Buckets written as a first absolute value then strictly positive deltas.
    mutating func readBucketDelta(previous: Int64?) throws(BinaryDecodingError) -> Int64 {
        guard let previous else { return try readVarInt() }
        let start = offset
        let d = try readVarUInt()
        guard d >= 1, d <= UInt64(Int64.max), previous <= Int64.max - Int64(d) else {
            throw BinaryDecodingError(.invalidValue, "bucket delta \(d) is not increasing or overflows", offset: start)
        }
        return previous + Int64(d)
    }

    /// Like `readBucketDelta`, for logs where several entries may share a bucket: deltas
    /// may be zero, never negative.
    mutating func readBucket(after previous: Int64?) throws(BinaryDecodingError) -> Int64 {
        guard let previous else { return try readVarInt() }
        let d = try readVarUInt(maximum: UInt64(Int64.max), "bucket delta")
        guard previous <= Int64.max - Int64(d) else { throw error(.invalidValue, "bucket overflows") }
        return previous + Int64(d)
    }
}

extension BinaryWriter {
    mutating func writeBucketDelta(_ bucket: Int64, previous: Int64?) {
        if let previous { writeVarUInt(UInt64(bitPattern: bucket &- previous)) } else { writeVarInt(bucket) }
    }
}

// MARK: count

struct CountEntry: BucketEntry {
    var bucket: Int64
    var count: Int64
}

/// The newest bucket is kept inline, so a key whose events all fall in one bucket (the
/// common case for short windows over sparse keys) allocates nothing. The ring holds
/// the older buckets in order.
struct CountState: Sendable, Equatable {
    var ring = BucketRing<CountEntry>()
    /// Events in `newestBucket`; 0 when the state is empty. A bucket with more than
    /// UInt32.max events spills the full count into the ring (same bucket twice there).
    var newestCount: UInt32 = 0
    var newestBucket: Int64 = 0
    var total: Int64 = 0

    mutating func add(bucket b: Int64) {
        total += 1
        if newestCount == 0 {
            newestBucket = b
            newestCount = 1
        } else if b == newestBucket && newestCount < UInt32.max {
            newestCount += 1
        } else if b >= newestBucket {
            ring.append(CountEntry(bucket: newestBucket, count: Int64(newestCount)))
            newestBucket = b
            newestCount = 1
        } else {
            let i = ring.lowerBound(b)
            if i < ring.count && ring[i].bucket == b { ring[i].count += 1 } else { ring.insert(CountEntry(bucket: b, count: 1), at: i) }
        }
    }

    mutating func evict(through cutoff: Int64) {
        var removed: Int64 = 0
        ring.evict(through: cutoff) { removed += $0.count }
        total -= removed
        if newestCount > 0 && newestBucket <= cutoff {
            total -= Int64(newestCount)
            newestCount = 0
            newestBucket = 0
        }
    }

    var isEmpty: Bool { newestCount == 0 }

    func write(to w: inout BinaryWriter) {
        w.writeVarUInt(UInt64(ring.count))
        var prev: Int64? = nil
        for e in ring.elements {
            if let p = prev { w.writeVarUInt(UInt64(bitPattern: e.bucket &- p)) } else { w.writeVarInt(e.bucket) }
            w.writeVarUInt(UInt64(e.count))
            prev = e.bucket
        }
        if let p = prev { w.writeVarUInt(UInt64(bitPattern: newestBucket &- p)) } else { w.writeVarInt(newestBucket) }
        w.writeVarUInt(UInt64(newestCount))
    }

    init() {}

    init(from r: inout BinaryReader) throws(BinaryDecodingError) {
        let n = try r.readCount(minimumItemSize: 2, "count buckets")
        var items = ContiguousArray<CountEntry>()
        items.reserveCapacity(n)
        var prev: Int64? = nil
        var total: Int64 = 0
        for _ in 0..<n {
            // Equal buckets are legal here (see newestCount), decreasing ones are not.
            let b = try r.readBucket(after: prev)
            let c = try r.readVarUInt(maximum: UInt64(Int64.max - total), "bucket count")
            guard c >= 1 else { throw r.error(.invalidValue, "empty count bucket") }
            total += Int64(c)
            items.append(CountEntry(bucket: b, count: Int64(c)))
            prev = b
        }
        let nb = try r.readBucket(after: prev)
        let nc = try r.readVarUInt(maximum: min(UInt64(UInt32.max), UInt64(Int64.max - total)), "newest bucket count")
        guard nc >= 1 else { throw r.error(.invalidValue, "empty newest bucket") }
        ring = BucketRing(items)
        newestBucket = nb
        newestCount = UInt32(nc)
        self.total = total + Int64(nc)
    }
}

// MARK: sum / avg

struct SumEntry: BucketEntry {
    var bucket: Int64
    var count: Int64
    var sum: Double
}

struct SumState: Sendable, Equatable {
    var ring = BucketRing<SumEntry>()
    var count: Int64 = 0
    var sum: Double = 0

    mutating func add(bucket b: Int64, _ x: Double) {
        count += 1
        sum += x
        if let l = ring.last, l.bucket >= b {
            let i = l.bucket == b ? ring.count - 1 : ring.lowerBound(b)
            if ring[i].bucket == b {
                ring[i].count += 1
                ring[i].sum += x
            } else {
                ring.insert(SumEntry(bucket: b, count: 1, sum: x), at: i)
            }
        } else {
            ring.append(SumEntry(bucket: b, count: 1, sum: x))
        }
    }

    mutating func evict(through cutoff: Int64) {
        var c: Int64 = 0
        var s: Double = 0
        ring.evict(through: cutoff) { c += $0.count; s += $0.sum }
        guard c > 0 else { return }
        count -= c
        // Exactly zero once empty, so rounding residue never outlives the data.
        sum = ring.isEmpty ? 0 : sum - s
    }

    func write(to w: inout BinaryWriter) {
        w.writeDouble(sum)
        w.writeVarUInt(UInt64(ring.count))
        var prev: Int64? = nil
        for e in ring.elements {
            w.writeBucketDelta(e.bucket, previous: prev)
            w.writeVarUInt(UInt64(e.count))
            w.writeDouble(e.sum)
            prev = e.bucket
        }
    }

    init() {}

    init(from r: inout BinaryReader) throws(BinaryDecodingError) {
        // The running sum is stored, not recomputed, so that continuing after a restore
        // rounds exactly as the uninterrupted run would.
        let sum = try r.readDouble()
        let n = try r.readCount(minimumItemSize: 10, "sum buckets")
        var items = ContiguousArray<SumEntry>()
        items.reserveCapacity(n)
        var prev: Int64? = nil
        var count: Int64 = 0
        for _ in 0..<n {
            let b = try r.readBucketDelta(previous: prev)
            let c = try r.readVarUInt(maximum: UInt64(Int64.max - count), "bucket count")
            guard c >= 1 else { throw r.error(.invalidValue, "empty sum bucket") }
            let s = try r.readDouble()
            guard s.isFinite else { throw r.error(.invalidValue, "non-finite bucket sum") }
            count += Int64(c)
            items.append(SumEntry(bucket: b, count: Int64(c), sum: s))
            prev = b
        }
        guard sum.isFinite, n > 0 || sum == 0 else { throw r.error(.invalidValue, "running sum \(sum) inconsistent with its buckets") }
        ring = BucketRing(items)
        self.count = count
        self.sum = sum
    }
}

// MARK: min / max

struct ExtremeEntry: BucketEntry {
    var bucket: Int64
    var value: Double
}

struct ExtremeState: Sendable, Equatable {
    var ring = BucketRing<ExtremeEntry>()

    mutating func add(bucket b: Int64, _ x: Double, isMax: Bool) {
        let e = ExtremeEntry(bucket: b, value: x)
        if isMax {
            ring.monotonicInsert(e) { $0.value >= $1.value }
        } else {
            ring.monotonicInsert(e) { $0.value <= $1.value }
        }
    }

    func write(to w: inout BinaryWriter) {
        w.writeVarUInt(UInt64(ring.count))
        var prev: Int64? = nil
        for e in ring.elements {
            w.writeBucketDelta(e.bucket, previous: prev)
            w.writeDouble(e.value)
            prev = e.bucket
        }
    }

    init() {}

    init(from r: inout BinaryReader, isMax: Bool) throws(BinaryDecodingError) {
        let n = try r.readCount(minimumItemSize: 9, "extreme entries")
        var items = ContiguousArray<ExtremeEntry>()
        items.reserveCapacity(n)
        var prev: Int64? = nil
        for _ in 0..<n {
            let b = try r.readBucketDelta(previous: prev)
            let v = try r.readDouble()
            guard v.isFinite else { throw r.error(.invalidValue, "non-finite extreme") }
            if let last = items.last, isMax ? v >= last.value : v <= last.value {
                throw r.error(.invalidValue, "extreme entries not strictly monotonic")
            }
            items.append(ExtremeEntry(bucket: b, value: v))
            prev = b
        }
        ring = BucketRing(items)
    }
}

// MARK: first

struct FirstEntry: BucketEntry {
    var bucket: Int64
    var time: Int64
    var value: WindowStoredValue
}

/// The earliest event of every non-empty bucket: each becomes the window's first once
/// the buckets before it leave.
struct FirstState: Sendable, Equatable {
    var ring = BucketRing<FirstEntry>()

    mutating func add(bucket b: Int64, time t: Int64, _ v: Value) {
        if let l = ring.last, l.bucket >= b {
            let i = l.bucket == b ? ring.count - 1 : ring.lowerBound(b)
            if ring[i].bucket == b {
                // Ties keep the earlier arrival.
                if t < ring[i].time { ring[i] = FirstEntry(bucket: b, time: t, value: WindowStoredValue(v)) }
            } else {
                ring.insert(FirstEntry(bucket: b, time: t, value: WindowStoredValue(v)), at: i)
            }
        } else {
            ring.append(FirstEntry(bucket: b, time: t, value: WindowStoredValue(v)))
        }
    }

    func write(to w: inout BinaryWriter) {
        w.writeVarUInt(UInt64(ring.count))
        var prev: Int64? = nil
        for e in ring.elements {
            w.writeBucketDelta(e.bucket, previous: prev)
            w.writeVarInt(e.time)
            e.value.write(to: &w)
            prev = e.bucket
        }
    }

    init() {}

    init(from r: inout BinaryReader) throws(BinaryDecodingError) {
        let n = try r.readCount(minimumItemSize: 3, "first entries")
        var items = ContiguousArray<FirstEntry>()
        items.reserveCapacity(n)
        var prev: Int64? = nil
        for _ in 0..<n {
            let b = try r.readBucketDelta(previous: prev)
            let t = try r.readVarInt()
            items.append(FirstEntry(bucket: b, time: t, value: try WindowStoredValue(from: &r)))
            prev = b
        }
        ring = BucketRing(items)
    }
}

// MARK: last / previous

struct WindowTimedValue: Sendable, Equatable {
    var time: Int64
    var value: WindowStoredValue
}

/// The latest events by (time, arrival): two for `previous`, one for `last`. Nothing older
/// can ever matter again: eviction goes by time, so the older ones leave first.
///
/// One entry is kept inline: `last` is the common case (a session's device, IP, ...), and a
/// heap array per key for it was the largest part of such a keyspace's memory.
struct LastState: Sendable, Equatable {
    private enum Storage: Sendable, Equatable {
        case empty
        case one(WindowTimedValue)
        /// Exactly two, ascending by time.
        case two(ContiguousArray<WindowTimedValue>)
    }

    private var storage = Storage.empty

    var isEmpty: Bool { storage == .empty }
    var newest: WindowTimedValue? {
        switch storage {
        case .empty: nil
        case .one(let e): e
        case .two(let p): p[1]
        }
    }
    var older: WindowTimedValue? {
        if case .two(let p) = storage { return p[0] }
        return nil
    }

    /// `keep`: 2 for `previous`, 1 for `last`. Among equal times the later arrival is newer.
    mutating func add(time t: Int64, _ v: Value, keep: Int) {
        let e = WindowTimedValue(time: t, value: WindowStoredValue(v))
        var pair: (WindowTimedValue, WindowTimedValue)
        switch storage {
        case .empty:
            storage = .one(e)
            return
        case .one(let a):
            pair = t >= a.time ? (a, e) : (e, a)
        case .two(let p):
            if t < p[0].time { return }
            pair = t >= p[1].time ? (p[1], e) : (e, p[1])
        }
        storage = keep >= 2 ? .two([pair.0, pair.1]) : .one(pair.1)
    }

    mutating func evict(through cutoff: Int64, spec: WindowSpec) {
        switch storage {
        case .empty: return
        case .one(let a):
            if spec.bucket(a.time) <= cutoff { storage = .empty }
        case .two(let p):
            if spec.bucket(p[1].time) <= cutoff {
                storage = .empty
            } else if spec.bucket(p[0].time) <= cutoff {
                storage = .one(p[1])
            }
        }
    }

    func write(to w: inout BinaryWriter) {
        func put(_ e: WindowTimedValue) {
            w.writeVarInt(e.time)
            e.value.write(to: &w)
        }
        switch storage {
        case .empty: w.writeVarUInt(0)
        case .one(let e): w.writeVarUInt(1); put(e)
        case .two(let p): w.writeVarUInt(2); put(p[0]); put(p[1])
        }
    }

    init() {}

    init(from r: inout BinaryReader) throws(BinaryDecodingError) {
        let n = try r.readVarUInt(maximum: 2, "last entries")
        var read: [WindowTimedValue] = []
        for _ in 0..<n {
            let t = try r.readVarInt()
            if let p = read.last, p.time > t { throw r.error(.invalidValue, "last entries out of order") }
            read.append(WindowTimedValue(time: t, value: try WindowStoredValue(from: &r)))
        }
        switch read.count {
        case 0: storage = .empty
        case 1: storage = .one(read[0])
        default: storage = .two(ContiguousArray(read))
        }
    }
}
