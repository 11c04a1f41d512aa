import CAMFAStore

/// The records of a task's changelog partition (README "Changelog topics"). Partition p of
/// the changelog holds input partition p's state as a log of checkpoint batches: the rows a
/// checkpoint wrote, then a marker. A batch counts only once its marker is in the log, so a
/// writer that dies half-way leaves rows that every reader ignores (and the next owner
/// overwrites, see `ChangelogReplay`).
///
/// Keys, so that compaction keeps the newest version of each:
/// - `e` keyspace NUL key: a statistics entry; `u` user: a user's MFA state;
/// - `s` + 4-byte index: one chunk of the base a full checkpoint wrote;
/// - `m`: the marker.
///
/// Every value starts with the writer's epoch, the batch's sequence number and the base
/// generation (8 bytes each, big-endian). A row's value then has a flag byte, 1 and the
/// payload, or 0 for "no row" (what a repair writes for a key an unfinished batch created).
/// An empty payload is a deletion, never a Kafka tombstone: compaction drops those, and a
/// deleted key must keep hiding its version inside the base.
public enum ChangelogRecord: Equatable, Sendable {
    case entry(keyspace: String, key: String, Row)
    case user(String, Row)
    case baseChunk(index: UInt32, Row)
    case marker(Marker)

    public struct Row: Equatable, Sendable {
        public var stamp: Stamp
        /// Empty: deleted since the base; nil: no row (the base's version, if any, stands).
        public var payload: [UInt8]?
        public init(stamp: Stamp, payload: [UInt8]?) {
            self.stamp = stamp
            self.payload = payload
        }
    }

    /// Who wrote a record in which batch.
    public struct Stamp: Equatable, Sendable {
        /// The owner's epoch: a new owner's is larger than every epoch in the log.
        public var epoch: Int64
        /// The batch: one more than the largest in the log when written, whoever wrote it.
        public var seq: Int64
        /// Advances with every full checkpoint; rows of an older generation are outside the
        /// current base's state.
        public var generation: Int64
        public init(epoch: Int64, seq: Int64, generation: Int64) {
            self.epoch = epoch
            self.seq = seq
            self.generation = generation
        }
    }

    /// The end of a batch: the checkpoint it completes.
    public struct Marker: Equatable, Sendable {
        public var stamp: Stamp
        /// The input offset the state covers (resume there).
        public var nextOffset: Int64
        /// This batch wrote a new base: `chunks` chunks of generation `stamp.generation`.
        public var full: Bool
        /// Chunks of the current base.
        public var chunks: UInt32
        public var metadata: [UInt8]
        public init(stamp: Stamp, nextOffset: Int64, full: Bool, chunks: UInt32, metadata: [UInt8]) {
            self.stamp = stamp
            self.nextOffset = nextOffset
            self.full = full
            self.chunks = chunks
            self.metadata = metadata
        }
    }

    public var stamp: Stamp {
        switch self {
        case .entry(_, _, let r), .user(_, let r), .baseChunk(_, let r): r.stamp
        case .marker(let m): m.stamp
        }
    }

    public var key: [UInt8] {
        switch self {
        case .entry(let ks, let k, _): [UInt8(ascii: "e")] + Array(ks.utf8) + [0] + Array(k.utf8)
        case .user(let u, _): [UInt8(ascii: "u")] + Array(u.utf8)
        case .baseChunk(let i, _): [UInt8(ascii: "s"), UInt8(i >> 24), UInt8(i >> 16 & 0xFF), UInt8(i >> 8 & 0xFF), UInt8(i & 0xFF)]
        case .marker: [UInt8(ascii: "m")]
        }
    }

    public var value: [UInt8] {
        var out: [UInt8] = []
        func put(_ v: Int64) { withUnsafeBytes(of: v.bigEndian) { out.append(contentsOf: $0) } }
        let s = stamp
        put(s.epoch)
        put(s.seq)
        put(s.generation)
        switch self {
        case .entry(_, _, let r), .user(_, let r), .baseChunk(_, let r):
            if let payload = r.payload {
                out.append(1)
                out += payload
            } else {
                out.append(0)
            }
        case .marker(let m):
            put(m.nextOffset)
            out.append(m.full ? 1 : 0)
            withUnsafeBytes(of: m.chunks.bigEndian) { out.append(contentsOf: $0) }
            out += m.metadata
        }
        return out
    }

    /// nil for a Kafka tombstone (none of camfa's; an operator's or a compaction artifact).
    public init?(key: [UInt8], value: [UInt8]?) throws(ChangelogError) {
        guard let value else { return nil }
        guard let kind = key.first, value.count >= 24 else { throw ChangelogError.malformed("a record shorter than its stamp") }
        func int64(_ at: Int) -> Int64 {
            value[at..<at + 8].reduce(Int64(0)) { $0 << 8 | Int64($1) }
        }
        let stamp = Stamp(epoch: int64(0), seq: int64(8), generation: int64(16))
        let payload: [UInt8]? = kind == UInt8(ascii: "m") ? nil : try Self.rowPayload(value)
        switch kind {
        case UInt8(ascii: "e"):
            guard let nul = key.dropFirst().firstIndex(of: 0) else { throw ChangelogError.malformed("an entry key without its keyspace") }
            self = .entry(keyspace: String(decoding: key[1..<nul], as: UTF8.self), key: String(decoding: key[(nul + 1)...], as: UTF8.self),
                          Row(stamp: stamp, payload: payload))
        case UInt8(ascii: "u"):
            self = .user(String(decoding: key.dropFirst(), as: UTF8.self), Row(stamp: stamp, payload: payload))
        case UInt8(ascii: "s"):
            guard key.count == 5 else { throw ChangelogError.malformed("a base chunk key of \(key.count) bytes") }
            let i = key[1...].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            self = .baseChunk(index: i, Row(stamp: stamp, payload: payload))
        case UInt8(ascii: "m"):
            guard value.count >= 37 else { throw ChangelogError.malformed("a marker of \(value.count) bytes") }
            let chunks = value[33..<37].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            self = .marker(Marker(stamp: stamp, nextOffset: int64(24), full: value[32] == 1, chunks: chunks, metadata: Array(value[37...])))
        default:
            throw ChangelogError.malformed("unknown record kind \(kind)")
        }
    }

    private static func rowPayload(_ value: [UInt8]) throws(ChangelogError) -> [UInt8]? {
        guard value.count >= 25 else { throw ChangelogError.malformed("a row without its flag") }
        switch value[24] {
        case 0: return nil
        case 1: return Array(value[25...])
        default: throw ChangelogError.malformed("a row flag of \(value[24])")
        }
    }

    /// One checkpoint as a batch: its rows, the new base in chunks, then the marker.
    /// `chunks` is the current base's chunk count, kept by an incremental batch.
    public static func batch(_ w: CheckpointWrite, stamp: Stamp, chunks: UInt32, chunkBytes: Int = 256 << 10) -> [ChangelogRecord] {
        var out: [ChangelogRecord] = []
        var baseChunks = chunks
        if w.full {
            let stream = baseStream(w.segments)
            baseChunks = 0
            var at = 0
            while at < stream.count {
                let end = min(stream.count, at + chunkBytes)
                out.append(.baseChunk(index: baseChunks, Row(stamp: stamp, payload: Array(stream[at..<end]))))
                baseChunks += 1
                at = end
            }
        }
        for d in w.deletes { out.append(.entry(keyspace: d.keyspace, key: d.key, Row(stamp: stamp, payload: []))) }
        for d in w.userDeletes { out.append(.user(d, Row(stamp: stamp, payload: []))) }
        for u in w.upserts { out.append(.entry(keyspace: u.keyspace, key: u.key, Row(stamp: stamp, payload: u.value))) }
        for u in w.userUpserts { out.append(.user(u.user, Row(stamp: stamp, payload: u.value))) }
        out.append(.marker(Marker(stamp: stamp, nextOffset: w.nextOffset, full: w.full, chunks: baseChunks, metadata: w.metadata)))
        return out
    }

    /// Segments as one stream of (4-byte length, bytes), cut into chunks: a segment may
    /// exceed a Kafka message's size.
    static func baseStream(_ segments: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(segments.reduce(0) { $0 + $1.count + 4 })
        for s in segments {
            withUnsafeBytes(of: UInt32(s.count).bigEndian) { out.append(contentsOf: $0) }
            out += s
        }
        return out
    }

    static func segments(fromStream stream: [UInt8]) throws(ChangelogError) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var at = 0
        while at < stream.count {
            guard at + 4 <= stream.count else { throw ChangelogError.malformed("a truncated base") }
            let n = Int(stream[at..<at + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            at += 4
            guard at + n <= stream.count else { throw ChangelogError.malformed("a truncated base segment") }
            out.append(Array(stream[at..<at + n]))
            at += n
        }
        return out
    }
}

public struct ChangelogError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Code: String, Sendable { case malformed, incomplete, unavailable, foreignWrites }
    public var code: Code
    public var message: String
    public var description: String { "changelog \(code.rawValue): \(message)" }
    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    static func malformed(_ m: String) -> ChangelogError { ChangelogError(code: .malformed, message: m) }
}
