/// Anything stored per bucket.
protocol BucketEntry: Sendable, Equatable {
    var bucket: Int64 { get }
}

/// A FIFO over a contiguous array: eviction advances `head` instead of shifting, and
/// the dead prefix is dropped once it is at least half the storage, so removal is O(1)
/// amortized. An empty ring holds no allocation. `head` is 32-bit to keep the
/// per-key state small; the dead prefix never exceeds the live part, so it stays far
/// below 2^31 for any ring that fits in memory.
struct BucketRing<E: BucketEntry>: Sendable, Equatable {
    private(set) var items: ContiguousArray<E> = []
    private var storedHead: Int32 = 0
    private var head: Int {
        @inline(__always) get { Int(storedHead) }
        @inline(__always) set { storedHead = Int32(newValue) }
    }

    init() {}

    init(_ elements: ContiguousArray<E>) { items = elements }

    var count: Int { items.count - head }
    var isEmpty: Bool { head == items.count }

    subscript(i: Int) -> E {
        get { items[head + i] }
        set { items[head + i] = newValue }
    }

    var first: E? { isEmpty ? nil : items[head] }
    var last: E? { isEmpty ? nil : items[items.count - 1] }

    mutating func append(_ e: E) { items.append(e) }

    mutating func removeLast() { items.removeLast(); if isEmpty { removeAll() } }

    mutating func removeFirst() {
        head += 1
        if head == items.count {
            removeAll()
        } else if head * 2 >= items.count {
            // Dead entries never outnumber live ones: that bounds the waste (and what
            // dead entries keep alive) per key while keeping removal O(1) amortized.
            compact()
        }
    }

    /// Drops the dead prefix, and gives back capacity a past burst left behind.
    private mutating func compact() {
        items.removeFirst(head)
        head = 0
        if items.capacity > 8 && items.capacity > 4 * items.count {
            items = ContiguousArray(items)
        }
    }

    mutating func removeAll() {
        items = []
        head = 0
    }

    mutating func insert(_ e: E, at i: Int) { items.insert(e, at: head + i) }

    mutating func remove(at i: Int) {
        items.remove(at: head + i)
        if isEmpty { removeAll() }
    }

    mutating func replaceSubrange(_ r: Range<Int>, with e: E) {
        items.replaceSubrange((head + r.lowerBound)..<(head + r.upperBound), with: CollectionOfOne(e))
    }

    /// First index whose bucket is ≥ `b` (`count` if none).
    func lowerBound(_ b: Int64) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if self[mid].bucket < b { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// First index whose bucket is > `b`.
    func upperBound(_ b: Int64) -> Int {
        var lo = 0, hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if self[mid].bucket <= b { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Drops entries whose bucket is ≤ cutoff, calling `evicted` for each.
    @inline(__always)
    mutating func evict(through cutoff: Int64, _ evicted: (E) -> Void = { _ in }) {
        while head < items.count, items[head].bucket <= cutoff {
            evicted(items[head])
            removeFirst()
        }
    }

    var elements: ArraySlice<E> { items[head...] }

    static func == (a: BucketRing, b: BucketRing) -> Bool { a.elements.elementsEqual(b.elements) }

    /// Sliding-window extreme in the monotonic-deque manner: buckets ascend and each
    /// entry is strictly worse than the one before it, so the front is the extreme of
    /// the window. `atLeastAsGood(x, y)` says x makes y useless when x lasts as long.
    /// In-order inserts are O(1) amortized; an out-of-order one lands in its place.
    mutating func monotonicInsert(_ e: E, atLeastAsGood: (E, E) -> Bool) {
        if let l = last, l.bucket < e.bucket {
            while let l = last, atLeastAsGood(e, l) { removeLast() }
            append(e)
            return
        }
        let pos = lowerBound(e.bucket)
        // Something lasting at least as long and at least as good already covers it.
        if pos < count && atLeastAsGood(self[pos], e) { return }
        var end = pos
        while end < count && self[end].bucket == e.bucket { end += 1 }
        var start = pos
        while start > 0 && atLeastAsGood(e, self[start - 1]) { start -= 1 }
        replaceSubrange(start..<end, with: e)
    }
}
