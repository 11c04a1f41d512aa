import CAMFAStore

/// Rebuilds a task's checkpoint from its changelog partition, read in log order (pure: the
/// records come from `ChangelogRestorer`, or from a test).
///
/// What counts (README "Changelog topics"):
/// - A row counts once a marker with a sequence number at least the row's follows it: the
///   marker ends the row's batch, or a later one. A batch a writer never finished (it died)
///   has no marker of its own; its rows are still followed by the next owner's markers, but
///   that owner rewrites every such row with its committed version first (`repairKeys`), in
///   the same batch, so the newest version of each key in the log is always a committed one.
///   That is also what keeps the result right once compaction has removed older markers.
/// - A row or marker of an epoch older than a marker before it is a zombie's (an owner that
///   lost the partition without noticing) and is ignored.
/// - Rows after the last marker are an unfinished batch: ignored, and repaired.
/// - Rows of a generation older than the last marker's predate its base and are ignored.
public struct ChangelogReplay: Sendable {
    struct Version: Sendable {
        /// nil: no row.
        var payload: [UInt8]?
        var generation: Int64
    }

    private var committed: [[UInt8]: Version] = [:]
    private var pending: [(key: [UInt8], version: Version, seq: Int64)] = []
    private var repair: Set<[UInt8]> = []
    public private(set) var marker: ChangelogRecord.Marker?
    /// The largest epoch and sequence number anywhere in the log, finished or not: a new
    /// owner's epoch and first batch go past them.
    public private(set) var maxEpoch: Int64 = 0
    public private(set) var maxSeq: Int64 = 0
    /// Records ignored as a zombie's.
    public private(set) var ignored = 0
    public private(set) var records = 0

    public init() {}

    public mutating func apply(key: [UInt8], value: [UInt8]?) throws(ChangelogError) {
        guard let record = try ChangelogRecord(key: key, value: value) else { return }
        apply(record)
    }

    public mutating func apply(_ record: ChangelogRecord) {
        records += 1
        let stamp = record.stamp
        maxEpoch = max(maxEpoch, stamp.epoch)
        maxSeq = max(maxSeq, stamp.seq)
        if let marker, stamp.epoch < marker.stamp.epoch {
            ignored += 1
            if case .marker = record {} else { repair.insert(record.key) }
            return
        }
        switch record {
        case .entry(_, _, let row), .user(_, let row), .baseChunk(_, let row):
            pending.append((record.key, Version(payload: row.payload, generation: row.stamp.generation), row.stamp.seq))
        case .marker(let m):
            var kept: [(key: [UInt8], version: Version, seq: Int64)] = []
            for p in pending {
                if p.seq <= m.stamp.seq {
                    committed[p.key] = p.version
                    repair.remove(p.key)
                } else {
                    kept.append(p)
                }
            }
            pending = kept
            if m.full { committed = committed.filter { $0.value.generation >= m.stamp.generation } }
            marker = m
        }
    }

    /// Keys whose newest version in the log is not committed: the next batch must write
    /// each with `committedVersion(of:)` (or a deletion when there is none).
    public var repairKeys: Set<[UInt8]> { repair.union(pending.map(\.key)) }

    /// The committed row of a key: nil when it has none in the current generation.
    public func committedPayload(of key: [UInt8]) -> [UInt8]? {
        guard let v = committed[key], v.generation == marker?.stamp.generation else { return nil }
        return v.payload
    }

    /// The repair rows for the next batch, in a stable order.
    public func repairRows(stamp: ChangelogRecord.Stamp) throws(ChangelogError) -> [ChangelogRecord] {
        var out: [ChangelogRecord] = []
        for key in repairKeys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            // The key decides the kind; the stamp is the repairing batch's.
            let row = ChangelogRecord.Row(stamp: stamp, payload: committedPayload(of: key))
            if let r = try ChangelogRecord(key: key, value: ChangelogRecord.user("", row).value) { out.append(r) }
        }
        return out
    }

    /// The checkpoint the log holds: nil when no batch was ever finished.
    public func checkpoint(partition: PartitionID) throws(ChangelogError) -> PartitionCheckpoint? {
        guard let marker else { return nil }
        let generation = marker.stamp.generation
        var stream: [UInt8] = []
        for i in 0..<marker.chunks {
            let key = ChangelogRecord.baseChunk(index: i, .init(stamp: marker.stamp, payload: [])).key
            guard let chunk = committed[key], chunk.generation == generation, let payload = chunk.payload else {
                throw ChangelogError(code: .incomplete, message: "\(partition): chunk \(i) of the base of generation \(generation) is missing")
            }
            stream += payload
        }
        var entries: [(keyspace: String, key: String, value: [UInt8])] = []
        var users: [(user: String, value: [UInt8])] = []
        for key in committed.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            let v = committed[key]!
            guard v.generation == generation, let payload = v.payload else { continue }
            switch key.first {
            case UInt8(ascii: "e"):
                let nul = key.dropFirst().firstIndex(of: 0)!
                entries.append((String(decoding: key[1..<nul], as: UTF8.self), String(decoding: key[(nul + 1)...], as: UTF8.self), payload))
            case UInt8(ascii: "u"):
                users.append((String(decoding: key.dropFirst(), as: UTF8.self), payload))
            default: continue
            }
        }
        // Deletions matter only against a base; without one a deleted key is just absent.
        if marker.chunks == 0 {
            entries.removeAll { $0.value.isEmpty }
            users.removeAll { $0.value.isEmpty }
        }
        return PartitionCheckpoint(
            partition: partition, epoch: marker.stamp.epoch, nextOffset: marker.nextOffset, metadata: marker.metadata,
            entries: entries, users: users, segments: try ChangelogRecord.segments(fromStream: stream))
    }
}
