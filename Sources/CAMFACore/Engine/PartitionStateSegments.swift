import Synchronization

/// The base of a partition's checkpoint: its whole state as a few large blobs (segments),
/// written by a full checkpoint; incremental checkpoints store only the rows changed since.
///
/// A million keys as a million rows cost seconds in SQLite alone; as a few hundred segments
/// they cost little more than the bytes. Each segment holds one unit (one keyspace, or the
/// users), so units are encoded and decoded independently, in parallel when the caller
/// provides threads (the engine itself never starts any):
///
///     byte     format (1)
///     byte     unit kind: 0 = keyspace entries, 1 = users
///     varuint  stored keyspace index (entries only; the metadata's layout order)
///     varuint  record count
///     count ×  (string key, length-prefixed record)
///
/// The length prefix lets `camfa state dump` lift records out without decoding them and
/// lets every record be checked to end where it says.
extension PartitionState {
    static let segmentFormat: UInt8 = 1
    /// Big enough that a million keys make a few hundred rows, small enough that one unit
    /// never needs one huge allocation.
    static let segmentTargetBytes = 1 << 20
    /// Below this many rows written since the base, a new base is not worth the copy the
    /// full snapshot makes the owning thread pay (`rebaseMinimumRows`' default).
    public static let minimumRowsBeforeRebase = 4_096

    /// Runs `body(0..<n)`, possibly concurrently. The daemon passes
    /// `DispatchQueue.concurrentPerform`; the default runs them in order.
    public typealias ParallelFor = @Sendable (_ count: Int, _ body: @Sendable (Int) -> Void) -> Void
    public static let serial: ParallelFor = { n, body in for i in 0..<n { body(i) } }

    /// Whether this take's rows should be folded into a new base. Rows on top of the base
    /// cost a restore far more per key than the base does, so once the rows written since it
    /// pass a sixteenth of the live keys, the writer rewrites the base from the stored
    /// checkpoint (`rebasedSegments`) on its own thread. A full snapshot would do the same
    /// but makes the owning thread copy every map it touches next (seconds for millions of keys).
    mutating func takeRebaseDecision() -> Bool {
        if needsFullCheckpoint {
            rowsSinceBase = 0
            return false
        }
        rowsSinceBase += pendingChangeCount
        guard rowsSinceBase > max(rebaseMinimumRows, liveKeyCount / 16) else { return false }
        rowsSinceBase = 0
        return true
    }
}

/// Builds one unit's segments: sealed when the body reaches the target size.
struct SegmentBuilder {
    /// nil: the users unit.
    let storedKeyspace: Int?
    private(set) var segments: [[UInt8]] = []
    private var body = BinaryWriter(reservingCapacity: PartitionState.segmentTargetBytes + (64 << 10))
    private var count = 0

    init(storedKeyspace: Int?) { self.storedKeyspace = storedKeyspace }

    /// Appends one record already framed as (string key, length-prefixed value).
    mutating func addFramed<C: Collection<UInt8>>(_ bytes: C) {
        body.writeRaw(bytes)
        recordAdded()
    }

    mutating func add(key: String, value: [UInt8]) {
        body.writeString(key)
        body.writeBytes(value)
        recordAdded()
    }

    private mutating func recordAdded() {
        count += 1
        if body.count >= PartitionState.segmentTargetBytes { seal() }
    }

    mutating func seal() {
        guard count > 0 else { return }
        var w = BinaryWriter(reservingCapacity: body.count + 16)
        w.writeByte(PartitionState.segmentFormat)
        if let k = storedKeyspace {
            w.writeByte(0)
            w.writeVarUInt(UInt64(k))
        } else {
            w.writeByte(1)
        }
        w.writeVarUInt(UInt64(count))
        w.writeRaw(body.bytes)
        segments.append(w.bytes)
        body.removeAll()
        count = 0
    }
}

extension PartitionChangeSnapshot {
    /// Keys per encoding task: a unit larger than this is split, so one big keyspace does
    /// not leave the other cores idle.
    static let encodeTaskKeys = 131_072

    /// One encoding task: a range of shards of one unit's map (keyspace maps in layout
    /// order, then users).
    struct EncodeTask {
        var unit: Int
        var shards: Range<Int>
    }

    func encodeTasks() -> [EncodeTask] {
        func split<V>(_ map: ShardedMap<V>, unit: Int) -> [EncodeTask] {
            var tasks: [EncodeTask] = []
            var lower = 0, keys = 0
            for (s, shard) in map.shards.enumerated() {
                keys += shard.count
                if keys >= Self.encodeTaskKeys || s == map.shards.count - 1 {
                    if keys > 0 { tasks.append(EncodeTask(unit: unit, shards: lower..<(s + 1))) }
                    lower = s + 1
                    keys = 0
                }
            }
            return tasks
        }
        var tasks: [EncodeTask] = []
        for (unit, m) in maps.enumerated() { tasks += split(m.map, unit: unit) }
        tasks += split(allUsers, unit: maps.count)
        return tasks
    }

    func encode(_ task: EncodeTask) -> [[UInt8]] {
        var builder = SegmentBuilder(storedKeyspace: task.unit < maps.count ? task.unit : nil)
        var record = BinaryWriter(reservingCapacity: 256)
        func add<V>(_ map: ShardedMap<V>, _ write: (V, inout BinaryWriter) -> Void) {
            for shard in map.shards[task.shards] {
                for (key, value) in shard {
                    record.removeAll()
                    write(value, &record)
                    builder.add(key: key.string, value: record.bytes)
                }
            }
        }
        if task.unit < maps.count {
            add(maps[task.unit].map) { (r: KeyRecord, w: inout BinaryWriter) in PartitionState.write(r, to: &w) }
        } else {
            add(allUsers) { (u: UserState, w: inout BinaryWriter) in PartitionState.write(u, to: &w) }
        }
        builder.seal()
        return builder.segments
    }

    /// `encoded()` with the full snapshot's encoding spread over `parallel`.
    public func encoded(parallel: PartitionState.ParallelFor) -> PartitionChanges {
        guard full else { return encodedRows() }
        var changes = PartitionChanges(full: true, metadata: metadata)
        let tasks = encodeTasks()
        let results = UnitResults<[[UInt8]]>(count: tasks.count)
        let snapshot = self
        parallel(tasks.count) { results.set($0, snapshot.encode(tasks[$0])) }
        for i in tasks.indices { changes.segments += results.take(i) ?? [] }
        return changes
    }
}

/// One result slot per unit, each written by exactly one task before `parallel` returns.
final class UnitResults<T: Sendable>: Sendable {
    private let slots: Mutex<[T?]>

    init(count: Int) { slots = Mutex(Array(repeating: nil, count: count)) }

    func set(_ i: Int, _ value: T) { slots.withLock { $0[i] = value } }
    func take(_ i: Int) -> T? { slots.withLock { s in defer { s[i] = nil }; return s[i] } }
}

extension PartitionState {
    /// One segment's header, read without touching its records.
    struct SegmentHeader {
        /// nil: the users unit.
        var storedKeyspace: Int?
        var count: Int
        var recordsStart: Int
    }

    /// `keyspaceCount`: the stored layout's; a segment naming a keyspace beyond it is refused.
    static func readSegmentHeader(_ segment: [UInt8], index: Int, keyspaceCount: Int) throws(BinaryDecodingError) -> SegmentHeader {
        var r = BinaryReader(segment)
        let format = try r.readByte()
        guard format == segmentFormat else {
            throw BinaryDecodingError(.unsupportedVersion, "segment \(index): format \(format); this camfa reads \(segmentFormat)", offset: 0)
        }
        let kind = try r.readByte()
        let storedKeyspace: Int?
        switch kind {
        case 0:
            let k = Int(try r.readVarUInt(maximum: UInt64(Int32.max), "keyspace index"))
            guard k < keyspaceCount else { throw r.error(.invalidValue, "segment \(index): keyspace index \(k) is not in the metadata") }
            storedKeyspace = k
        case 1: storedKeyspace = nil
        default: throw r.error(.invalidTag, "segment \(index): unknown unit kind \(kind)")
        }
        let count = try r.readCount(minimumItemSize: 2, "segment record count")
        return SegmentHeader(storedKeyspace: storedKeyspace, count: count, recordsStart: r.offset)
    }

    /// A unit's restore stopped at a damaged segment.
    struct UnitFailure: Error {
        var segment: Int
        var error: BinaryDecodingError
    }

    /// Reads one length-prefixed record with `read`, which must consume exactly its bytes.
    static func readFramed<T>(
        _ r: inout BinaryReader, _ read: (inout BinaryReader) throws(BinaryDecodingError) -> T
    ) throws(BinaryDecodingError) -> T {
        let length = try r.readCount(minimumItemSize: 1, "record length")
        let end = r.offset + length
        let value = try read(&r)
        guard r.offset == end else { throw r.error(.invalidValue, "a record does not end where its length says") }
        return value
    }

    /// Restores from a checkpoint: the base `segments` (decoded per unit through `parallel`),
    /// then the rows stored since, where an empty value is a tombstone.
    public init(
        restoringMetadata metadata: [UInt8], segments: [[UInt8]],
        entries: [(keyspace: String, key: String, value: [UInt8])],
        users: [(user: String, value: [UInt8])], policySet: PolicySet, parallel: ParallelFor = PartitionState.serial
    ) throws(BinaryDecodingError) {
        guard !segments.isEmpty else {
            try self.init(restoringMetadata: metadata, entries: entries, users: users, policySet: policySet)
            return
        }
        self.init(policySet: policySet)
        let mapping = try restoreMetadata(metadata, policySet: policySet)
        let stored = try Self.readLayout(metadata)

        // Each segment's unit: a stored keyspace, or (the last one) the users.
        let usersUnit = stored.keyspaces.count
        var headers: [SegmentHeader] = []
        var unitOf: [Int] = []
        for (i, s) in segments.enumerated() {
            let h = try Self.readSegmentHeader(s, index: i, keyspaceCount: usersUnit)
            headers.append(h)
            unitOf.append(h.storedKeyspace ?? usersUnit)
        }
        // One task per unit, spread over `parallel`, decoding its segments straight into
        // its map: parsing every segment on its own first would balance cores better but
        // allocates every record twice, and on a fresh heap the page faults of that copy
        // cost more than the balance gains.
        var segmentsOf = Array(repeating: [Int](), count: usersUnit + 1)
        for i in segments.indices { segmentsOf[unitOf[i]].append(i) }
        let unitSegments = segmentsOf
        // Room for the rows too: a map that outgrows its reservation while they are applied
        // rehashes every key it holds.
        var storedIndex: [String: Int] = [:]
        for (i, ks) in stored.keyspaces.enumerated() { storedIndex[ks.text] = i }
        var rowsOf = Array(repeating: 0, count: usersUnit + 1)
        for e in entries where !e.value.isEmpty { if let k = storedIndex[e.keyspace] { rowsOf[k] += 1 } }
        rowsOf[usersUnit] = users.count
        let unitRows = rowsOf
        let layout = self.layout
        let segmentHeaders = headers
        let keyspaceMaps = UnitResults<Result<ShardedMap<KeyRecord>, UnitFailure>>(count: usersUnit)
        let userMap = UnitResults<Result<ShardedMap<UserState>, UnitFailure>>(count: 1)
        // Units by size, largest first, so the largest never starts last.
        let order = (0...usersUnit).sorted { unitSegments[$0].count > unitSegments[$1].count }
        parallel(order.count) { n in
            let unit = order[n]
            let list = unitSegments[unit]
            let count = list.reduce(unitRows[unit]) { $0 + segmentHeaders[$1].count }
            var current = 0
            do throws(BinaryDecodingError) {
                if unit == usersUnit {
                    var map = ShardedMap<UserState>()
                    map.reserveCapacity(count)
                    var methodSets = Set<[MFAMethod]>()
                    for i in list {
                        current = i
                        var r = BinaryReader(segments[i], offset: segmentHeaders[i].recordsStart)
                        for _ in 0..<segmentHeaders[i].count {
                            let id = try r.readString()
                            map[id] = try Self.readFramed(&r) { (r: inout BinaryReader) throws(BinaryDecodingError) in
                                try Self.readUser(&r, methodSets: &methodSets)
                            }
                        }
                        try r.expectEnd()
                    }
                    userMap.set(0, .success(map))
                } else if let m = mapping[unit] {
                    let slotCount = layout[m.keyspace].specs.count
                    var map = ShardedMap<KeyRecord>()
                    map.reserveCapacity(count)
                    for i in list {
                        current = i
                        var r = BinaryReader(segments[i], offset: segmentHeaders[i].recordsStart)
                        for _ in 0..<segmentHeaders[i].count {
                            let key = try r.readString()
                            let record = try Self.readFramed(&r) { (r: inout BinaryReader) throws(BinaryDecodingError) in try Self.readRecord(&r) }
                            if let placed = Self.remap(record, slots: m.slots, slotCount: slotCount) { map[key] = placed }
                        }
                        try r.expectEnd()
                    }
                    keyspaceMaps.set(unit, .success(map))
                }
            } catch {
                let failure = UnitFailure(segment: current, error: error)
                if unit == usersUnit { userMap.set(0, .failure(failure)) } else { keyspaceMaps.set(unit, .failure(failure)) }
            }
        }
        // The first damaged segment in stored order is reported, whichever unit finished first.
        var failures: [UnitFailure] = []
        var maps: [Int: ShardedMap<KeyRecord>] = [:]
        for unit in 0..<usersUnit {
            switch keyspaceMaps.take(unit) {
            case .success(let map): maps[unit] = map
            case .failure(let f): failures.append(f)
            case nil: break
            }
        }
        var restoredUsers: ShardedMap<UserState>?
        switch userMap.take(0) {
        case .success(let map): restoredUsers = map
        case .failure(let f): failures.append(f)
        case nil: break
        }
        if let first = failures.min(by: { $0.segment < $1.segment }) { throw first.error }
        for (unit, m) in mapping.enumerated() {
            guard let m, let map = maps.removeValue(forKey: unit) else { continue }
            keyspaces[m.keyspace] = map
        }
        // Taken out, so the map stays uniquely referenced and the rows below change it in place.
        if let map = restoredUsers.take() { self.users = map }

        for e in entries {
            guard let s = storedIndex[e.keyspace], let m = mapping[s] else { continue }
            if e.value.isEmpty {
                keyspaces[m.keyspace].removeValue(forKey: e.key)
                continue
            }
            var r = BinaryReader(e.value)
            let record = try Self.readRecord(&r)
            try r.expectEnd()
            keyspaces[m.keyspace][e.key] = Self.remap(record, slots: m.slots, slotCount: layout[m.keyspace].specs.count)
        }
        for u in users {
            if u.value.isEmpty {
                self.users.removeValue(forKey: u.user)
                continue
            }
            var r = BinaryReader(u.value)
            self.users[u.user] = try Self.readUser(&r)
            try r.expectEnd()
        }
        clearChanges(fullNeeded: !isIdentity(mapping))
        rowsSinceBase = entries.count + users.count
    }

    /// A stored record in the current slot layout; nil when none of its slots survive.
    static func remap(_ stored: KeyRecord, slots: [Int?], slotCount: Int) -> KeyRecord? {
        if slots.count == slotCount, stored.windows.count == slotCount, slots.enumerated().allSatisfy({ $0.element == $0.offset }) {
            return stored
        }
        var record = KeyRecord(windows: ContiguousArray(repeating: nil, count: slotCount))
        var any = false
        for (i, w) in stored.windows.enumerated() {
            guard let w, i < slots.count, let target = slots[i] else { continue }
            record.windows[target] = w
            any = true
        }
        return any ? record : nil
    }

    /// Every record of `segments`, undecoded: its unit (a stored keyspace index, or
    /// `keyspaceCount` for the users), its key, the whole framed record and its value bytes.
    static func forEachStoredRecord(
        _ segments: [[UInt8]], keyspaceCount: Int,
        _ body: (_ unit: Int, _ key: String, _ framed: ArraySlice<UInt8>, _ value: ArraySlice<UInt8>) -> Void
    ) throws(BinaryDecodingError) {
        for (i, s) in segments.enumerated() {
            let h = try readSegmentHeader(s, index: i, keyspaceCount: keyspaceCount)
            var r = BinaryReader(s, offset: h.recordsStart)
            for _ in 0..<h.count {
                let start = r.offset
                let key = try r.readString()
                let length = try r.readCount(minimumItemSize: 1, "record length")
                let value = try r.readRaw(count: length)
                body(h.storedKeyspace ?? keyspaceCount, key, s[start..<r.offset], value)
            }
            try r.expectEnd()
        }
    }

    /// A new base equal to `segments` with `entries` and `users` (rows, tombstones as empty
    /// values) applied: what the checkpoint writer stores when a take asked for a rebase.
    /// Works on the stored bytes alone: records are copied, never decoded.
    public static func rebasedSegments(
        metadata: [UInt8], segments: [[UInt8]], entries: [(keyspace: String, key: String, value: [UInt8])],
        users: [(user: String, value: [UInt8])]
    ) throws(BinaryDecodingError) -> [[UInt8]] {
        let stored = try readLayout(metadata)
        var index: [String: Int] = [:]
        for (i, ks) in stored.keyspaces.enumerated() { index[ks.text] = i }
        // Per unit (keyspaces, then users): the keys the rows replace or delete.
        var replaced = Array(repeating: Set<ExactKey>(), count: stored.keyspaces.count + 1)
        for e in entries { if let k = index[e.keyspace] { replaced[k].insert(ExactKey(e.key)) } }
        for u in users { replaced[stored.keyspaces.count].insert(ExactKey(u.user)) }

        var builders = (0...stored.keyspaces.count).map { SegmentBuilder(storedKeyspace: $0 < stored.keyspaces.count ? $0 : nil) }
        try forEachStoredRecord(segments, keyspaceCount: stored.keyspaces.count) { unit, key, framed, _ in
            if !replaced[unit].contains(ExactKey(key)) { builders[unit].addFramed(framed) }
        }
        for e in entries where !e.value.isEmpty {
            if let k = index[e.keyspace] { builders[k].add(key: e.key, value: e.value) }
        }
        for u in users where !u.value.isEmpty { builders[stored.keyspaces.count].add(key: u.user, value: u.value) }
        var out: [[UInt8]] = []
        for i in builders.indices {
            builders[i].seal()
            out += builders[i].segments
        }
        return out
    }

    /// The stored rows a checkpoint amounts to once its base and later rows are merged,
    /// sorted (keyspace in stored layout order, then key and user in UTF-8 byte order), with
    /// values as stored: what `camfa state dump` prints from, so equal state dumps equally
    /// whether it was last written as a base or as rows.
    public static func mergedRows(
        metadata: [UInt8], segments: [[UInt8]], entries: [(keyspace: String, key: String, value: [UInt8])],
        users: [(user: String, value: [UInt8])]
    ) throws(BinaryDecodingError) -> (entries: [(keyspace: String, key: String, value: [UInt8])], users: [(user: String, value: [UInt8])]) {
        let stored = try readLayout(metadata)
        var keyed = Array(repeating: [ExactKey: [UInt8]](), count: stored.keyspaces.count)
        var userRows: [ExactKey: [UInt8]] = [:]
        try forEachStoredRecord(segments, keyspaceCount: stored.keyspaces.count) { unit, key, _, value in
            if unit < keyed.count { keyed[unit][ExactKey(key)] = Array(value) } else { userRows[ExactKey(key)] = Array(value) }
        }
        var index: [String: Int] = [:]
        for (i, ks) in stored.keyspaces.enumerated() { index[ks.text] = i }
        for e in entries {
            guard let k = index[e.keyspace] else { continue }
            if e.value.isEmpty { keyed[k].removeValue(forKey: ExactKey(e.key)) } else { keyed[k][ExactKey(e.key)] = e.value }
        }
        for u in users {
            if u.value.isEmpty { userRows.removeValue(forKey: ExactKey(u.user)) } else { userRows[ExactKey(u.user)] = u.value }
        }
        func byteOrder(_ a: ExactKey, _ b: ExactKey) -> Bool { a.string.utf8.lexicographicallyPrecedes(b.string.utf8) }
        var mergedEntries: [(keyspace: String, key: String, value: [UInt8])] = []
        for (k, rows) in keyed.enumerated() {
            for key in rows.keys.sorted(by: byteOrder) { mergedEntries.append((stored.keyspaces[k].text, key.string, rows[key]!)) }
        }
        let mergedUsers = userRows.keys.sorted(by: byteOrder).map { (user: $0.string, value: userRows[$0]!) }
        return (mergedEntries, mergedUsers)
    }
}
