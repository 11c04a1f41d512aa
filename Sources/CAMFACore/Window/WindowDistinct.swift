// Distinct count: exact set with last-seen buckets, then a sliding HyperLogLog.

struct KeyEntry: BucketEntry {
    var bucket: Int64
    var key: WindowKey
}

/// Two representations. Small (no dictionary, which costs over a kilobyte even for
/// two keys): the ring holds one entry per live value, at its latest bucket, in bucket
/// order, found by linear search. Large (more than `smallLimit` values): `lastSeen`
/// maps each value to its latest bucket and the ring orders (bucket, value) sightings
/// so eviction knows what to drop; a sighting superseded by a later one stays in the
/// ring until it expires and is then skipped. Back to small only once empty.
struct ExactDistinct: Sendable, Equatable {
    static let smallLimit = 16

    var lastSeen: [WindowKey: Int64] = [:]
    var ring = BucketRing<KeyEntry>()

    var isLarge: Bool { !lastSeen.isEmpty }
    var count: Int { isLarge ? lastSeen.count : ring.count }

    mutating func add(bucket b: Int64, _ k: WindowKey) {
        let e = KeyEntry(bucket: b, key: k)
        if !isLarge {
            if let i = ring.elements.firstIndex(where: { $0.key == k }) {
                let j = i - ring.elements.startIndex
                if ring[j].bucket >= b { return }
                ring.remove(at: j)
            }
            insertSorted(e)
            if ring.count > Self.smallLimit {
                for x in ring.elements { lastSeen[x.key] = x.bucket }
            }
            return
        }
        if let seen = lastSeen[k], seen >= b { return }
        lastSeen[k] = b
        insertSorted(e)
    }

    /// After entries of the same bucket, as if it had arrived in order.
    private mutating func insertSorted(_ e: KeyEntry) {
        if let l = ring.last, l.bucket > e.bucket {
            ring.insert(e, at: ring.upperBound(e.bucket))
        } else {
            ring.append(e)
        }
    }

    mutating func evict(through cutoff: Int64) {
        if !isLarge {
            ring.evict(through: cutoff)
            return
        }
        ring.evict(through: cutoff) { e in
            if lastSeen[e.key] == e.bucket { lastSeen[e.key] = nil }
        }
        if lastSeen.isEmpty { lastSeen = [:] }
    }
}

struct RankEntry: BucketEntry {
    var bucket: Int64
    var rank: UInt8
}

/// HyperLogLog whose registers slide: each register keeps, as a monotonic deque, the
/// (bucket, rank) pairs that can still become its maximum (a later pair with a rank at
/// least as high makes earlier ones useless). The harmonic sum is kept in fixed point
/// so that adding and removing terms never drifts.
struct SlidingHLL: Sendable, Equatable {
    static let precision = 10
    static let registerCount = 1 << precision
    /// Ranks are capped so that 2^-rank stays an integer in 2^53 fixed point.
    static let maxRank: UInt8 = 53

    var registers: ContiguousArray<ContiguousArray<RankEntry>>
    /// Σ 2^(53 - max rank) over registers, empty registers counting rank 0.
    var harmonic: UInt64
    var zeros: Int
    /// Earliest front bucket of any register, to skip eviction scans that cannot evict.
    var earliest: Int64

    init() {
        registers = ContiguousArray(repeating: [], count: Self.registerCount)
        harmonic = UInt64(Self.registerCount) << 53
        zeros = Self.registerCount
        earliest = .max
    }

    var isEmpty: Bool { zeros == Self.registerCount }

    /// `earliest` may lag below the true minimum after inserts (it only costs an extra
    /// scan), and the sums follow from the registers, so only the registers count.
    static func == (a: SlidingHLL, b: SlidingHLL) -> Bool { a.registers == b.registers }

    @inline(__always) static func term(_ rank: UInt8) -> UInt64 { 1 << UInt64(53 - Int(rank)) }

    mutating func add(bucket b: Int64, hash: UInt64) {
        let j = Int(hash >> UInt64(64 - Self.precision))
        let rest = hash << UInt64(Self.precision)
        let rank = UInt8(min(rest.leadingZeroBitCount + 1, Int(Self.maxRank)))
        let before = registers[j].first?.rank ?? 0
        Self.monotonicInsert(&registers[j], RankEntry(bucket: b, rank: rank))
        let after = registers[j].first!
        if after.rank != before {
            harmonic = harmonic - Self.term(before) + Self.term(after.rank)
            if before == 0 { zeros -= 1 }
        }
        earliest = min(earliest, after.bucket)
    }

    /// BucketRing.monotonicInsert on a plain array: register deques hold a handful of pairs.
    static func monotonicInsert(_ a: inout ContiguousArray<RankEntry>, _ e: RankEntry) {
        var pos = a.count
        while pos > 0 && a[pos - 1].bucket >= e.bucket { pos -= 1 }
        if pos < a.count && a[pos].rank >= e.rank { return }
        var end = pos
        while end < a.count && a[end].bucket == e.bucket { end += 1 }
        var start = pos
        while start > 0 && a[start - 1].rank <= e.rank { start -= 1 }
        a.replaceSubrange(start..<end, with: CollectionOfOne(e))
    }

    mutating func evict(through cutoff: Int64) {
        guard cutoff >= earliest else { return }
        var newEarliest = Int64.max
        for j in registers.indices {
            guard let f = registers[j].first else { continue }
            if f.bucket <= cutoff {
                var k = 1
                while k < registers[j].count && registers[j][k].bucket <= cutoff { k += 1 }
                if k == registers[j].count {
                    registers[j] = []
                    harmonic = harmonic - Self.term(f.rank) + Self.term(0)
                    zeros += 1
                    continue
                }
                registers[j].removeFirst(k)
                harmonic = harmonic - Self.term(f.rank) + Self.term(registers[j][0].rank)
            }
            newEarliest = min(newEarliest, registers[j][0].bucket)
        }
        earliest = newEarliest
    }

    var estimate: Int64 {
        let m = Double(Self.registerCount)
        if zeros == Self.registerCount { return 0 }
        let alpha = 0.7213 / (1 + 1.079 / m)
        let raw = alpha * m * m / (Double(harmonic) / 9_007_199_254_740_992.0)
        if raw <= 2.5 * m && zeros > 0 {
            return Int64((m * Foundation.log(m / Double(zeros))).rounded())
        }
        return Int64(raw.rounded())
    }

    func write(to w: inout BinaryWriter) {
        // Only non-empty registers, as (index gap, pairs).
        var previous = -1
        w.writeVarUInt(UInt64(Self.registerCount - zeros))
        for j in registers.indices where !registers[j].isEmpty {
            w.writeVarUInt(UInt64(j - previous - 1))
            previous = j
            w.writeVarUInt(UInt64(registers[j].count))
            var prev: Int64? = nil
            for e in registers[j] {
                w.writeBucketDelta(e.bucket, previous: prev)
                w.writeByte(e.rank)
                prev = e.bucket
            }
        }
    }

    init(from r: inout BinaryReader) throws(BinaryDecodingError) {
        self.init()
        let used = Int(try r.readVarUInt(maximum: UInt64(Self.registerCount), "used registers"))
        var j = -1
        for _ in 0..<used {
            let gap = try r.readVarUInt(maximum: UInt64(Self.registerCount), "register gap")
            j += Int(gap) + 1
            guard j < Self.registerCount else { throw r.error(.invalidValue, "register index \(j) out of range") }
            let n = try r.readCount(minimumItemSize: 2, "register pairs")
            guard n >= 1 else { throw r.error(.invalidValue, "empty register listed") }
            var list = ContiguousArray<RankEntry>()
            var prev: Int64? = nil
            for _ in 0..<n {
                let b = try r.readBucketDelta(previous: prev)
                let rank = try r.readByte()
                guard rank >= 1, rank <= Self.maxRank, list.last.map({ $0.rank > rank }) ?? true else {
                    throw r.error(.invalidValue, "register ranks not strictly decreasing within 1...\(Self.maxRank)")
                }
                list.append(RankEntry(bucket: b, rank: rank))
                prev = b
            }
            harmonic = harmonic - Self.term(0) + Self.term(list[0].rank)
            zeros -= 1
            earliest = min(earliest, list[0].bucket)
            registers[j] = list
        }
    }
}

enum DistinctState: Sendable, Equatable {
    case exact(ExactDistinct)
    case sketch(SlidingHLL)

    var isEmpty: Bool {
        switch self {
        case .exact(let e): return e.ring.isEmpty
        case .sketch(let s): return s.isEmpty
        }
    }

    var count: Int64 {
        switch self {
        case .exact(let e): return Int64(e.count)
        case .sketch(let s): return s.estimate
        }
    }

    mutating func add(bucket b: Int64, _ k: WindowKey, limit: Int) {
        switch self {
        case .exact(var e):
            self = .exact(ExactDistinct())  // releases the payload so it is mutated in place
            e.add(bucket: b, k)
            if e.count > limit {
                var s = SlidingHLL()
                if e.isLarge {
                    for (key, bucket) in e.lastSeen { s.add(bucket: bucket, hash: key.stableHash) }
                } else {
                    for x in e.ring.elements { s.add(bucket: x.bucket, hash: x.key.stableHash) }
                }
                self = .sketch(s)
            } else {
                self = .exact(e)
            }
        case .sketch(var s):
            self = .exact(ExactDistinct())
            s.add(bucket: b, hash: k.stableHash)
            self = .sketch(s)
        }
    }

    mutating func evict(through cutoff: Int64) {
        switch self {
        case .exact(var e):
            self = .exact(ExactDistinct())  // no allocation: empty collections are shared
            e.evict(through: cutoff)
            self = .exact(e)
        case .sketch(var s):
            self = .exact(ExactDistinct())
            s.evict(through: cutoff)
            // Back to exact counting once nothing is left to be approximate about.
            if !s.isEmpty { self = .sketch(s) }
        }
    }

    func write(to w: inout BinaryWriter) {
        switch self {
        case .exact(let e):
            w.writeByte(e.isLarge ? 2 : 0)
            w.writeVarUInt(UInt64(e.ring.count))
            var prev: Int64? = nil
            for x in e.ring.elements {
                // Sightings may share a bucket, so deltas here may be zero.
                if let p = prev { w.writeVarUInt(UInt64(bitPattern: x.bucket &- p)) } else { w.writeVarInt(x.bucket) }
                x.key.write(to: &w)
                prev = x.bucket
            }
        case .sketch(let s):
            w.writeByte(1)
            s.write(to: &w)
        }
    }

    init(from r: inout BinaryReader) throws(BinaryDecodingError) {
        let modeOffset = r.offset
        switch try r.readByte() {
        case let mode where mode == 0 || mode == 2:
            let n = try r.readCount(minimumItemSize: 2, "distinct sightings")
            var e = ExactDistinct()
            var items = ContiguousArray<KeyEntry>()
            items.reserveCapacity(n)
            var prev: Int64? = nil
            for _ in 0..<n {
                let b = try r.readBucket(after: prev)
                let k = try WindowKey(from: &r)
                if let seen = e.lastSeen[k], seen >= b || mode == 0 { throw r.error(.invalidValue, "repeated distinct sighting") }
                e.lastSeen[k] = b
                items.append(KeyEntry(bucket: b, key: k))
                prev = b
            }
            if mode == 0 {
                // Small: one entry per value, the loop above rejected repeats.
                guard n <= ExactDistinct.smallLimit else {
                    throw BinaryDecodingError(.invalidValue, "small distinct set with \(n) values", offset: modeOffset)
                }
                e.lastSeen = [:]
            } else {
                guard n > 0 else { throw BinaryDecodingError(.invalidValue, "empty large distinct set", offset: modeOffset) }
            }
            e.ring = BucketRing(items)
            self = .exact(e)
        case 1:
            self = .sketch(try SlidingHLL(from: &r))
        case let t:
            throw r.error(.invalidTag, "unknown distinct mode \(t)")
        }
    }
}

import Foundation
