// CAMFAStore: partition checkpoints and user MFA state in SQLite (WAL), with fencing.
// The store never interprets the blobs it keeps: the engine owns their format and versioning,
// so this module has no dependency on the engine.

/// A Kafka topic partition, the unit of state ownership.
public struct PartitionID: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}

public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The database could not be opened or the store is closed.
        case open
        /// The file or directory is not writable (permissions, read-only file system).
        case readOnly
        /// SQLITE_FULL: the disk (or the configured page limit) is full.
        case diskFull
        /// The file is not a SQLite database or its pages are damaged.
        case corrupt
        /// A newer epoch owns the partition; the write or claim was refused and nothing changed.
        case fenced
        /// Any other I/O or SQLite failure.
        case io
        /// Another connection held the write lock for longer than the busy timeout.
        case busy
        /// The file is a SQLite database, but not one this version of the store understands.
        case schema
    }

    public var code: Code
    public var message: String
    /// SQLite's extended result code when the failure came from SQLite, 0 otherwise.
    public var resultCode: Int32

    public init(code: Code, message: String, resultCode: Int32 = 0) {
        self.code = code
        self.message = message
        self.resultCode = resultCode
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// One checkpoint of one partition, written in a single transaction.
///
/// Order of application: with `full`, the partition's segments, entries and users are first
/// emptied and `segments` become its base; then `deletes`/`userDeletes` are applied, then
/// `upserts`/`userUpserts`. A key present in both a delete list and an upsert list therefore
/// ends up with the upserted value. While the partition has a base, a delete is stored as a
/// tombstone row (empty value): the key may be inside a segment, which the store cannot edit.
public struct CheckpointWrite: Sendable {
    public var partition: PartitionID
    /// Fencing token (consumer group generation or per-assignment epoch). The write is refused
    /// when the stored epoch is newer; an equal or older stored epoch is replaced by this one.
    /// Writers with equal epochs are not fenced from each other: within one group generation a
    /// partition has a single owner, which is what makes the generation usable as the token.
    public var epoch: Int64
    /// The offset to resume consuming at: last acknowledged offset + 1.
    public var nextOffset: Int64
    /// The engine's partition-level blob (watermark, format version, ...).
    public var metadata: [UInt8]
    public var upserts: [(keyspace: String, key: String, value: [UInt8])]
    public var deletes: [(keyspace: String, key: String)]
    public var userUpserts: [(user: String, value: [UInt8])]
    public var userDeletes: [String]
    /// true: replace the partition's whole state (everything not in the segments and upserts
    /// is removed); used for the first checkpoint of a partition, after a policy change, and
    /// when the changes stored since the last base have grown as large as the state.
    public var full: Bool
    /// With `full`: the new base, as opaque blobs kept in this order (the engine's format).
    public var segments: [[UInt8]]
    /// The changelog marker this checkpoint matches; nil keeps the stored one.
    public var changelog: ChangelogPosition?

    public init(
        partition: PartitionID,
        epoch: Int64,
        nextOffset: Int64,
        metadata: [UInt8] = [],
        upserts: [(keyspace: String, key: String, value: [UInt8])] = [],
        deletes: [(keyspace: String, key: String)] = [],
        userUpserts: [(user: String, value: [UInt8])] = [],
        userDeletes: [String] = [],
        full: Bool = false,
        segments: [[UInt8]] = [],
        changelog: ChangelogPosition? = nil
    ) {
        self.partition = partition
        self.epoch = epoch
        self.nextOffset = nextOffset
        self.metadata = metadata
        self.upserts = upserts
        self.deletes = deletes
        self.userUpserts = userUpserts
        self.userDeletes = userDeletes
        self.full = full
        self.segments = segments
        self.changelog = changelog
    }
}

/// Where a checkpoint's marker is in its changelog partition: the batch and the offset.
public struct ChangelogPosition: Sendable, Equatable {
    public var seq: Int64
    public var offset: Int64
    public init(seq: Int64, offset: Int64) {
        self.seq = seq
        self.offset = offset
    }
}

/// A partition's full stored state, read from one consistent snapshot: the base `segments`
/// and the rows changed since, where an empty value is a tombstone (deleted since the base).
public struct PartitionCheckpoint: Sendable {
    public var partition: PartitionID
    public var epoch: Int64
    public var nextOffset: Int64
    public var metadata: [UInt8]
    /// Ordered by keyspace, then key, comparing their UTF-8 bytes.
    public var entries: [(keyspace: String, key: String, value: [UInt8])]
    /// Ordered by user id, comparing UTF-8 bytes.
    public var users: [(user: String, value: [UInt8])]
    /// The base written by the last full checkpoint, in write order (empty if it had none).
    public var segments: [[UInt8]]
    public var changelog: ChangelogPosition?

    public init(
        partition: PartitionID, epoch: Int64, nextOffset: Int64, metadata: [UInt8],
        entries: [(keyspace: String, key: String, value: [UInt8])],
        users: [(user: String, value: [UInt8])], segments: [[UInt8]] = [], changelog: ChangelogPosition? = nil
    ) {
        self.changelog = changelog
        self.partition = partition
        self.epoch = epoch
        self.nextOffset = nextOffset
        self.metadata = metadata
        self.entries = entries
        self.users = users
        self.segments = segments
    }
}
