/// A bounded least-recently-used map. Entries live in flat arrays linked by index, so
/// a hit is one hash probe and a few integer writes, with no allocation; a miss at
/// capacity reuses the oldest slot. Not thread-safe: each owner keeps its own.
public struct LRUCache<Key: Hashable, Value> {
    public let capacity: Int
    private var slots: [Key: Int] = [:]
    private var keys: [Key] = []
    private var values: [Value] = []
    private var previous: [Int] = []
    private var next: [Int] = []
    /// Most recently used slot, or -1 when empty.
    private var head = -1
    /// Least recently used slot, or -1 when empty.
    private var tail = -1
    public private(set) var hits = 0
    public private(set) var misses = 0

    /// A capacity of 0 disables caching (every lookup misses, nothing is stored).
    public init(capacity: Int) {
        self.capacity = max(0, capacity)
        slots.reserveCapacity(min(self.capacity, 1 << 16))
    }

    public var count: Int { keys.count }

    public var hitRate: Double {
        hits + misses == 0 ? 0 : Double(hits) / Double(hits + misses)
    }

    public mutating func resetStatistics() {
        hits = 0
        misses = 0
    }

    /// The cached value, which becomes the most recently used.
    public mutating func value(forKey key: Key) -> Value? {
        guard let slot = slots[key] else {
            misses += 1
            return nil
        }
        hits += 1
        moveToFront(slot)
        return values[slot]
    }

    public mutating func insert(_ value: Value, forKey key: Key) {
        guard capacity > 0 else { return }
        if let slot = slots[key] {
            values[slot] = value
            moveToFront(slot)
            return
        }
        if keys.count < capacity {
            let slot = keys.count
            keys.append(key)
            values.append(value)
            previous.append(-1)
            next.append(-1)
            slots[key] = slot
            linkAtFront(slot)
            return
        }
        let slot = tail
        unlink(slot)
        slots[keys[slot]] = nil
        keys[slot] = key
        values[slot] = value
        slots[key] = slot
        linkAtFront(slot)
    }

    private mutating func moveToFront(_ slot: Int) {
        guard slot != head else { return }
        unlink(slot)
        linkAtFront(slot)
    }

    private mutating func unlink(_ slot: Int) {
        let p = previous[slot]
        let n = next[slot]
        if p >= 0 { next[p] = n } else { head = n }
        if n >= 0 { previous[n] = p } else { tail = p }
        previous[slot] = -1
        next[slot] = -1
    }

    private mutating func linkAtFront(_ slot: Int) {
        previous[slot] = -1
        next[slot] = head
        if head >= 0 { previous[head] = slot }
        head = slot
        if tail < 0 { tail = slot }
    }
}
