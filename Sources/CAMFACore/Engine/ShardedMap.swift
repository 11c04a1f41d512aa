#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A string-keyed map split by key hash into a fixed number of dictionaries (shards), so
/// that no single operation on a large partition's state touches all of it.
///
/// Two costs of one big dictionary land on the poll thread as stalls: growing past its
/// capacity rehashes every key it holds, and after a full checkpoint shares it with the
/// writer (copy-on-write), the next change copies all of it, hundreds of milliseconds at a
/// million keys. Split in shards, a change copies or rehashes one shard only; the copies a
/// full checkpoint causes are spread over the events that follow it.
///
/// Which shard holds a key depends on the process's hash seed, so nothing may depend on the
/// order of iteration, as with `Dictionary`.
///
/// Keys compare as bytes (`ExactKey`), not as Swift strings: `String ==` is canonical
/// equivalence, under which "é" and "e" + U+0301 are one key, so two distinct user ids a
/// producer spells that way would share one user's state (and a lock).
struct ShardedMap<Value> {
    /// A million keys make shards of about four thousand: a few milliseconds to copy one.
    static var shardCount: Int { 256 }

    private(set) var shards: [[ExactKey: Value]]

    init() { shards = Array(repeating: [:], count: Self.shardCount) }

    @inline(__always)
    static func shard(of key: String) -> Int { ExactKey(key).hashValue & (shardCount - 1) }

    struct Index {
        var shard: Int
        var index: Dictionary<ExactKey, Value>.Index
    }

    /// Kept, not summed over the shards: the live-key caps read it for every new key.
    private(set) var count = 0

    subscript(key: String) -> Value? {
        get { shards[Self.shard(of: key)][ExactKey(key)] }
        set {
            let s = Self.shard(of: key), before = shards[s].count
            shards[s][ExactKey(key)] = newValue
            count += shards[s].count - before
        }
        _modify {
            let s = Self.shard(of: key), before = shards[s].count
            defer { count += shards[s].count - before }
            yield &shards[s][ExactKey(key)]
        }
    }

    func index(forKey key: String) -> Index? {
        let s = Self.shard(of: key)
        return shards[s].index(forKey: ExactKey(key)).map { Index(shard: s, index: $0) }
    }

    /// The value at an index from `index(forKey:)`, changed in place (one hash per event
    /// instead of one per access).
    subscript(at i: Index) -> Value {
        get { shards[i.shard].values[i.index] }
        _modify { yield &shards[i.shard].values[i.index] }
    }

    mutating func remove(at i: Index) {
        shards[i.shard].remove(at: i.index)
        count -= 1
    }

    @discardableResult
    mutating func removeValue(forKey key: String) -> Value? {
        let removed = shards[Self.shard(of: key)].removeValue(forKey: ExactKey(key))
        if removed != nil { count -= 1 }
        return removed
    }

    /// Room for `n` keys in all: each shard gets its share and some slack, since keys do not
    /// spread exactly evenly.
    mutating func reserveCapacity(_ n: Int) {
        let share = n / Self.shardCount
        guard share > 0 else { return }
        let perShard = share + share / 8 + 8
        for s in shards.indices { shards[s].reserveCapacity(perShard) }
    }

    var keys: LazyMapSequence<ShardedMap, String> { lazy.map(\.key) }
}

extension ShardedMap: Sequence {
    struct Iterator: IteratorProtocol {
        var remaining: IndexingIterator<[[ExactKey: Value]]>
        var current: Dictionary<ExactKey, Value>.Iterator?

        mutating func next() -> (key: String, value: Value)? {
            while true {
                if let e = current?.next() { return (e.key.string, e.value) }
                guard let shard = remaining.next() else { return nil }
                current = shard.makeIterator()
            }
        }
    }

    func makeIterator() -> Iterator { Iterator(remaining: shards.makeIterator(), current: nil) }

    var underestimatedCount: Int { count }
}

extension ShardedMap: Sendable where Value: Sendable {}

extension ShardedMap: Equatable where Value: Equatable {
    // Equal maps hold each key in the same shard (one process, one seed).
    static func == (a: ShardedMap, b: ShardedMap) -> Bool { a.shards == b.shards }
}

/// A string compared and hashed by its UTF-8 bytes, never by canonical equivalence: the
/// state's keys are what producers sent, byte for byte (SQLite stores them that way too).
struct ExactKey: Hashable, Sendable {
    let string: String

    @inline(__always)
    init(_ string: String) { self.string = string }

    @inline(__always)
    static func == (a: ExactKey, b: ExactKey) -> Bool {
        // The contiguous UTF-8 of native strings: one length check and a memcmp, where
        // `utf8.elementsEqual` walked byte by byte (a measurable share of an event).
        var x = a.string, y = b.string
        return x.withUTF8 { xb in
            y.withUTF8 { yb in
                xb.count == yb.count && (xb.count == 0 || memcmp(xb.baseAddress!, yb.baseAddress!, xb.count) == 0)
            }
        }
    }

    @inline(__always)
    func hash(into hasher: inout Hasher) {
        var s = string
        s.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// Byte order of the UTF-8, shorter first on a common prefix: an order that does not
    /// depend on the process (eviction ties).
    static func less(_ a: String, _ b: String) -> Bool {
        var x = a, y = b
        return x.withUTF8 { xb in
            y.withUTF8 { yb in
                let n = min(xb.count, yb.count)
                let c = n == 0 ? 0 : memcmp(xb.baseAddress!, yb.baseAddress!, n)
                return c != 0 ? c < 0 : xb.count < yb.count
            }
        }
    }
}
