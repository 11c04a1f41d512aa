import CSQLite

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A checkpoint's keys copied into one byte buffer and ordered by primary key, ready to bind.
///
/// Applying changes in B-tree order is what makes large checkpoints fast: consecutive rows land
/// on the same leaf page, so each page is loaded and dirtied once instead of once per row, and
/// inserts into an empty range take SQLite's append path (measured on 1.1M rows handed over in
/// hash-map order: ~18 s applied as given, ~2.5 s sorted).
///
/// Copying the keys once also matters: the engine's key Strings are scattered over the heap, so
/// every touch of one is a cache miss. Sorting compares buffer slices with memcmp (no reference
/// counting), and the rows are then bound straight from the buffer.
///
/// The order is UTF-8 byte order (SQLite's BINARY collation). Each key appears once: when a key
/// occurs several times, only its last occurrence, the newest value, is kept.
struct SortedKeys {
    struct Item {
        var group: UInt32       // rank of the keyspace among this checkpoint's keyspaces
        var prefix: UInt64      // first 8 key bytes, big-endian: most comparisons end here
        var offset: Int
        var length: Int
        /// Position in the caller's array, to fetch the value.
        var index: Int
    }

    private var bytes: [UInt8] = []
    /// Keyspace names in rank order, as (offset, length) into `bytes`.
    private var groupNames: [(offset: Int, length: Int)] = []
    private(set) var items: [Item] = []

    /// `group` returns the keyspace of item i, or nil for tables without keyspaces.
    init(count: Int, group: (Int) -> String?, key: (Int) -> String, prefetchKey: ((Int) -> Void)? = nil) {
        guard count > 0 else { return }
        // Few distinct keyspaces: rank them once, then compare ranks. The engine hands out the
        // same String instance for a keyspace, so `==` against the previous one is usually a
        // pointer comparison and the dictionary is rarely consulted.
        var ranks: [String: UInt32] = [:]
        var groups = [UInt32](repeating: 0, count: count)
        var previous: (name: String, rank: UInt32)?
        for i in 0..<count {
            guard let name = group(i) else { break }
            if let previous, previous.name == name {
                groups[i] = previous.rank
                continue
            }
            let rank: UInt32
            if let known = ranks[name] {
                rank = known
            } else {
                rank = UInt32(ranks.count)
                ranks[name] = rank
            }
            groups[i] = rank
            previous = (name, rank)
        }
        let names = ranks.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        if names.count > 1 {
            var remap = [UInt32](repeating: 0, count: names.count)
            for (position, name) in names.enumerated() { remap[Int(ranks[name]!)] = UInt32(position) }
            for i in 0..<count { groups[i] = remap[Int(groups[i])] }
        }

        // Locals, not properties, so nothing below triggers a copy-on-write of a large array.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * 24)
        var groupNames: [(offset: Int, length: Int)] = []
        for name in names {
            let offset = bytes.count
            bytes.append(contentsOf: name.utf8)
            groupNames.append((offset, bytes.count - offset))
        }
        var items: [Item] = []
        items.reserveCapacity(count)
        for i in 0..<count {
            if let prefetchKey, i + 8 < count { prefetchKey(i + 8) }
            let offset = bytes.count
            let key = key(i)
            bytes.append(contentsOf: key.utf8)
            var prefix: UInt64 = 0
            var shift: UInt64 = 56
            for byte in key.utf8.prefix(8) {
                prefix |= UInt64(byte) << shift
                shift &-= 8
            }
            items.append(Item(group: groups[i], prefix: prefix, offset: offset, length: bytes.count - offset, index: i))
        }

        bytes.withUnsafeBufferPointer { buffer in
            let base = buffer.baseAddress
            func less(_ a: Item, _ b: Item) -> Bool {
                if a.group != b.group { return a.group < b.group }
                if a.prefix != b.prefix { return a.prefix < b.prefix }
                let common = min(a.length, b.length)
                if common > 8, let base {
                    let c = memcmp(base + a.offset + 8, base + b.offset + 8, common - 8)
                    if c != 0 { return c < 0 }
                }
                if a.length != b.length { return a.length < b.length }
                return a.index < b.index
            }
            func sameKey(_ a: Item, _ b: Item) -> Bool {
                a.group == b.group && a.length == b.length
                    && (a.length == 0 || memcmp(base! + a.offset, base! + b.offset, a.length) == 0)
            }
            var sorted = true
            for i in 1..<max(1, items.count) where !less(items[i - 1], items[i]) {
                sorted = false
                break
            }
            if !sorted { items.sort(by: less) }
            // Compact in place, keeping the last of each run of equal keys.
            var kept = 0
            for i in items.indices where i + 1 == items.count || !sameKey(items[i], items[i + 1]) {
                items[kept] = items[i]
                kept += 1
            }
            items.removeLast(items.count - kept)
        }
        self.bytes = bytes
        self.groupNames = groupNames
        self.items = items
    }

    /// Calls `body(keyspace, key, index, upcoming)` in key order until it returns something other
    /// than `done`, and returns that code (`done` when all rows went through). `upcoming` is the
    /// index of a row a few steps ahead (or nil), for prefetching its value; `prefetchBase` and
    /// `prefetchStride` locate the caller's elements so their slots can be prefetched earlier
    /// still. The buffers are
    /// valid only during the call, which is what SQLITE_STATIC bindings need.
    func forEach(
        prefetching prefetchBase: UnsafeRawPointer? = nil, stride prefetchStride: Int = 0,
        _ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>, Int, Int?) -> Int32, done: Int32
    ) -> Int32 {
        let lookahead = 8
        return bytes.withUnsafeBufferPointer { buffer in
            for position in items.indices {
                let item = items[position]
                let name = groupNames.isEmpty ? (offset: 0, length: 0) : groupNames[Int(item.group)]
                // Two stages: the caller's slot for the row 2×lookahead ahead (it is where the
                // value's address lives), then that value's storage when it is lookahead ahead.
                if position + 2 * lookahead < items.count, let base = prefetchBase {
                    camfa_prefetch(base + items[position + 2 * lookahead].index * prefetchStride)
                }
                let upcoming = position + lookahead < items.count ? items[position + lookahead].index : nil
                let rc = body(
                    UnsafeBufferPointer(rebasing: buffer[name.offset..<(name.offset + name.length)]),
                    UnsafeBufferPointer(rebasing: buffer[item.offset..<(item.offset + item.length)]),
                    item.index, upcoming)
                if rc != done { return rc }
            }
            return done
        }
    }
}

/// Starts loading the heap storage of the `[UInt8]` stored at `offset` inside element `index`
/// of `elements`, without touching that storage (no retain), so its cache miss overlaps with
/// the current row's work instead of stalling the next one.
@inline(__always)
func prefetchArrayStorage<Element>(in elements: UnsafeBufferPointer<Element>, at index: Int, offset: Int) {
    guard let base = elements.baseAddress else { return }
    let storage = UnsafeRawPointer(base + index).load(fromByteOffset: offset, as: UInt.self)
    guard let pointer = UnsafeRawPointer(bitPattern: storage) else { return }
    camfa_prefetch(pointer)
    camfa_prefetch(pointer + 64)
}

/// Starts loading the heap storage of the String stored at `offset` inside element `index`.
/// Reads only the element's own memory; for a small (inline) string the "address" is just its
/// characters, and prefetching a meaningless address is harmless (prefetches never fault).
@inline(__always)
func prefetchStringStorage<Element>(in elements: UnsafeBufferPointer<Element>, at index: Int, offset: Int) {
    guard let base = elements.baseAddress else { return }
    // The second word of a String holds the storage object's address below its flag bits.
    let object = UnsafeRawPointer(base + index).load(fromByteOffset: offset + 8, as: UInt.self)
    guard let pointer = UnsafeRawPointer(bitPattern: object & 0x0FFF_FFFF_FFFF_FFFF) else { return }
    camfa_prefetch(pointer)
    camfa_prefetch(pointer + 32)
}
