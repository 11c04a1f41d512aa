// Frequency profile: windowed Space-Saving over at most `profileCapacity` candidates.

struct ProfileSlot: Sendable, Equatable {
    var key: WindowKey
    /// Arrival rank of the slot's latest event, relative to the other slots only
    /// (renumbered before it could overflow); 32-bit so that a slot is 40 bytes.
    var lastSeq: UInt32
    /// Events of this slot in the window; 0 means the slot is free.
    var count: Int64
    /// Event time of the slot's latest event.
    var lastTime: Int64
}

/// Events are kept as a byte log in bucket order, 2–3 bytes each: varint(bucket delta
/// from the previous entry) then the slot index. Eviction decodes from the head and
/// decrements the slot; a slot that reaches zero is free for the next new value.
/// Replacing a live slot keeps its log entries, so the newcomer inherits the victim's
/// count, which is what Space-Saving prescribes, and that excess expires on schedule.
struct ProfileState: Sendable {
    var slots = ContiguousArray<ProfileSlot>()
    var log = ContiguousArray<UInt8>()
    /// Bucket that the delta of the entry at `head` is relative to.
    var baseBucket: Int64 = 0
    /// Bucket of the last entry of the log. Deltas use wrapping arithmetic: entries are
    /// in bucket order, so every delta is a true non-negative difference even when a
    /// restored state spans a range no live window would.
    var tailBucket: Int64 = 0
    /// Offset of the first live entry in `log`; 32-bit so that the whole state stays
    /// within the 48-byte WindowState (a 2 GiB log is not a per-key state).
    private var storedHead: Int32 = 0
    var head: Int {
        @inline(__always) get { Int(storedHead) }
        @inline(__always) set { storedHead = Int32(newValue) }
    }

    var isEmpty: Bool { head == log.count }

    mutating func add(bucket b: Int64, time t: Int64, _ k: WindowKey, capacity: Int) {
        var match = -1, free = -1
        var maxSeq: UInt32 = 0
        for i in slots.indices {
            maxSeq = max(maxSeq, slots[i].lastSeq)
            if slots[i].key == k { match = i } else if free < 0 && slots[i].count == 0 { free = i }
        }
        if maxSeq == UInt32.max { maxSeq = renumber() }
        let seq = maxSeq + 1
        let s: Int
        if match >= 0 {
            s = match
            if slots[s].count == 0 || t >= slots[s].lastTime {
                slots[s].lastTime = t
                slots[s].lastSeq = seq
            }
        } else if free >= 0 {
            s = free
            slots[s] = ProfileSlot(key: k, lastSeq: seq, count: 0, lastTime: t)
        } else if slots.count < capacity {
            s = slots.count
            // Exact growth: a user has a handful of usual values, and doubling would
            // leave a slot's worth of slack (40 bytes) per key most of the time.
            slots.reserveCapacity(slots.count + 1)
            slots.append(ProfileSlot(key: k, lastSeq: seq, count: 0, lastTime: t))
        } else {
            var v = 0
            for i in slots.indices.dropFirst() {
                let a = slots[i], m = slots[v]
                if (a.count, a.lastTime, a.lastSeq) < (m.count, m.lastTime, m.lastSeq) { v = i }
            }
            s = v
            slots[s].key = k
            slots[s].lastTime = t
            slots[s].lastSeq = seq
        }
        slots[s].count += 1
        append(bucket: b, slot: UInt8(s))
    }

    /// Ranks 1...n in the same order; returns the highest.
    private mutating func renumber() -> UInt32 {
        let order = slots.indices.sorted { slots[$0].lastSeq < slots[$1].lastSeq }
        for (rank, i) in order.enumerated() { slots[i].lastSeq = UInt32(rank + 1) }
        return UInt32(order.count)
    }

    private mutating func append(bucket b: Int64, slot: UInt8) {
        if isEmpty {
            log = []
            head = 0
            baseBucket = b
            tailBucket = b
            log.append(0)
            log.append(slot)
            return
        }
        if b >= tailBucket {
            // Grow by a quarter rather than doubling: per-key slack matters more here
            // than a few extra copies, and growth stays geometric.
            if log.capacity - log.count < 11 { log.reserveCapacity(log.count + Swift.max(16, log.count / 4)) }
            Self.appendVarint(&log, UInt64(bitPattern: b &- tailBucket))
            log.append(slot)
            tailBucket = b
            return
        }
        // Out of order: rebuild the log with the entry in its place (after entries of
        // the same bucket, as if it had arrived then).
        var entries = self.entries
        var i = entries.count
        while i > 0 && entries[i - 1].bucket > b { i -= 1 }
        entries.insert((b, slot), at: i)
        rebuild(entries)
    }

    var entries: [(bucket: Int64, slot: UInt8)] {
        var out: [(bucket: Int64, slot: UInt8)] = []
        var p = head
        var bucket = baseBucket
        while p < log.count {
            bucket &+= Int64(bitPattern: Self.readVarint(log, &p))
            out.append((bucket, log[p]))
            p += 1
        }
        return out
    }

    private mutating func rebuild(_ entries: [(bucket: Int64, slot: UInt8)]) {
        log = []
        head = 0
        guard let f = entries.first else { return }
        baseBucket = f.bucket
        var prev = f.bucket
        for e in entries {
            Self.appendVarint(&log, UInt64(bitPattern: e.bucket &- prev))
            log.append(e.slot)
            prev = e.bucket
        }
        tailBucket = prev
    }

    mutating func evict(through cutoff: Int64) {
        var p = head
        while p < log.count {
            var q = p
            let bucket = baseBucket &+ Int64(bitPattern: Self.readVarint(log, &q))
            if bucket > cutoff { break }
            slots[Int(log[q])].count -= 1
            baseBucket = bucket
            p = q + 1
        }
        guard p != head else { return }
        head = p
        if head == log.count {
            log = []
            head = 0
            slots = []
        } else if head * 4 >= log.count {
            // Dead bytes stay under a third of the live ones: the log is the bulk of a
            // user's state, and moving a few hundred bytes per eviction batch is cheap
            // (still O(1) amortized per event).
            log.removeFirst(head)
            head = 0
            if log.capacity > 64 && log.capacity > 4 * log.count { log = ContiguousArray(log) }
        }
    }

    /// Whether slot a ranks before slot b in the report.
    @inline(__always)
    private static func ranksBefore(_ a: ProfileSlot, _ b: ProfileSlot) -> Bool {
        if a.count != b.count { return a.count > b.count }
        if a.lastTime != b.lastTime { return a.lastTime > b.lastTime }
        return a.lastSeq > b.lastSeq
    }

    /// Top-`top` selection into a stack buffer: the engine reads this twice per event,
    /// so it should not allocate beyond the map it returns.
    func current(top: Int) -> Value {
        let k = Swift.min(top, slots.count)
        var m = ValueMap()
        guard k > 0 else { return .map(m) }
        withUnsafeTemporaryAllocation(of: Int.self, capacity: k) { best in
            var n = 0
            for i in slots.indices where slots[i].count > 0 {
                if n == k && !Self.ranksBefore(slots[i], slots[best[n - 1]]) { continue }
                var j = n == k ? n - 1 : n
                while j > 0 && Self.ranksBefore(slots[i], slots[best[j - 1]]) {
                    best[j] = best[j - 1]
                    j -= 1
                }
                best[j] = i
                if n < k { n += 1 }
            }
            for x in 0..<n { m[slots[best[x]].key.value] = .int(slots[best[x]].count) }
        }
        return .map(m)
    }

    /// Count and 0-based report position of one value, without building the map.
    func standing(of k: WindowKey) -> (count: Int64, rank: Int)? {
        guard let i = slots.firstIndex(where: { $0.key == k && $0.count > 0 }) else { return nil }
        var rank = 0
        for j in slots.indices where j != i && slots[j].count > 0 && Self.ranksBefore(slots[j], slots[i]) { rank += 1 }
        return (slots[i].count, rank)
    }

    @inline(__always)
    static func appendVarint(_ a: inout ContiguousArray<UInt8>, _ value: UInt64) {
        var v = value
        while v >= 0x80 {
            a.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        a.append(UInt8(v))
    }

    @inline(__always)
    static func readVarint(_ a: ContiguousArray<UInt8>, _ p: inout Int) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = a[p]
            p += 1
            result |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return result }
            shift += 7
        }
    }

    func write(to w: inout BinaryWriter) {
        w.writeVarUInt(UInt64(slots.count))
        for s in slots {
            s.key.write(to: &w)
            w.writeVarInt(s.lastTime)
            w.writeVarUInt(UInt64(s.lastSeq))
        }
        // The live log is already (delta, slot) pairs; only the first delta changes, to
        // an absolute bucket. The entry count is the sum of the slot counts.
        w.writeVarUInt(UInt64(slots.reduce(0) { $0 + $1.count }))
        var p = head
        var first = true
        while p < log.count {
            let d = Self.readVarint(log, &p)
            if first {
                w.writeVarInt(baseBucket &+ Int64(bitPattern: d))
                first = false
            } else {
                w.writeVarUInt(d)
            }
            w.writeByte(log[p])
            p += 1
        }
    }

    init() {}

    /// Slot counts are not stored: they are recomputed from the log, which makes an
    /// inconsistent count impossible to load.
    init(from r: inout BinaryReader) throws(BinaryDecodingError) {
        let n = Int(try r.readVarUInt(maximum: UInt64(WindowSpec.maxProfileCapacity), "profile slots"))
        var slots = ContiguousArray<ProfileSlot>()
        for _ in 0..<n {
            let k = try WindowKey(from: &r)
            guard k.isMapKey else { throw r.error(.invalidValue, "profile key cannot be a map key") }
            if slots.contains(where: { $0.key == k }) { throw r.error(.invalidValue, "duplicate profile key") }
            let lastTime = try r.readVarInt()
            let lastSeq = UInt32(try r.readVarUInt(maximum: UInt64(UInt32.max), "profile arrival rank"))
            slots.append(ProfileSlot(key: k, lastSeq: lastSeq, count: 0, lastTime: lastTime))
        }
        let m = try r.readCount(minimumItemSize: 2, "profile events")
        var entries: [(bucket: Int64, slot: UInt8)] = []
        entries.reserveCapacity(m)
        var prev: Int64? = nil
        for _ in 0..<m {
            let b = try r.readBucket(after: prev)
            let s = try r.readByte()
            guard Int(s) < slots.count else { throw r.error(.invalidValue, "profile slot \(s) out of range") }
            slots[Int(s)].count += 1
            entries.append((b, s))
            prev = b
        }
        if m > 0, let span = prev.map({ $0 &- entries[0].bucket }), span < 0 {
            throw r.error(.invalidValue, "profile bucket span overflows")
        }
        self.slots = slots
        rebuild(entries)
    }
}

extension ProfileState: Equatable {
    /// Compares what the log says, not where its dead prefix happens to end.
    static func == (a: ProfileState, b: ProfileState) -> Bool {
        guard a.slots == b.slots else { return false }
        let ea = a.entries, eb = b.entries
        return ea.count == eb.count && zip(ea, eb).allSatisfy { $0.bucket == $1.bucket && $0.slot == $1.slot }
    }
}
