import CSQLite

/// Layout of camfa-state.sqlite3 (user_version 3).
///
/// - `partitions` has a small integer `pid` so the per-key tables do not repeat the topic name in
///   every row; `next_offset` is NULL for a partition that has been claimed but never checkpointed.
/// - `entries` and `users` are WITHOUT ROWID tables clustered on (pid, …): a partition's rows are
///   contiguous in the B-tree, so loading is one sequential range scan already in the order the
///   API promises, and an upsert touches one B-tree instead of a rowid table plus an index.
/// - `segments` holds a partition's base: the blobs of its last full checkpoint, in order.
///   A full checkpoint of a million keys as a few hundred large rows costs a fraction of a
///   million small ones to write and to read back. `entries` and `users` then hold the
///   changes since that base; an empty `value` there is a tombstone (the key was deleted
///   after the base was written). Version 1 files have no `segments` and are upgraded in
///   place (an empty base, so their rows need no tombstones).
/// - `changelog_seq` and `changelog_offset` say which changelog marker the checkpoint
///   matches (README "Changelog topics"), so a restore on the same host reads one record
///   instead of the whole changelog partition; NULL without a changelog. Version 2 files
///   get the two columns on open.
/// - `sum` columns hold a `Checksum` of the row's payload (see there for why).
enum Schema {
    /// "CAMF": lets us refuse to write into some other application's SQLite file.
    static let applicationID: Int64 = 0x4341_4D46
    static let version: Int64 = 3

    static let create = """
        CREATE TABLE partitions(
            pid INTEGER PRIMARY KEY,
            topic TEXT NOT NULL,
            part INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            next_offset INTEGER,
            metadata BLOB,
            sum INTEGER,
            changelog_seq INTEGER,
            changelog_offset INTEGER,
            UNIQUE(topic, part)
        );
        CREATE TABLE entries(
            pid INTEGER NOT NULL,
            keyspace TEXT NOT NULL,
            key TEXT NOT NULL,
            value BLOB NOT NULL,
            sum INTEGER NOT NULL,
            PRIMARY KEY(pid, keyspace, key)
        ) WITHOUT ROWID;
        CREATE TABLE users(
            pid INTEGER NOT NULL,
            user TEXT NOT NULL,
            value BLOB NOT NULL,
            sum INTEGER NOT NULL,
            PRIMARY KEY(pid, user)
        ) WITHOUT ROWID;
        \(createSegments)
        PRAGMA application_id = \(applicationID);
        PRAGMA user_version = \(version);
        """

    /// Large blobs: a rowid table (WITHOUT ROWID suits small rows only).
    static let createSegments = """
        CREATE TABLE segments(
            pid INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            value BLOB NOT NULL,
            sum INTEGER NOT NULL,
            UNIQUE(pid, seq)
        );
        """

    /// From version 1: the same tables plus an empty `segments`.
    static let upgradeFrom1 = createSegments
    /// From version 2: the changelog position (when the columns are not there yet).
    static let changelogColumns = ["changelog_seq", "changelog_offset"]

    /// Page size for new files. Rows are ~100 bytes, so larger pages mean fewer B-tree levels
    /// and fewer page writes per checkpoint; it only applies before the first table exists.
    static let pageSize = 8192
    /// Per-connection page cache (negative = KiB). Large enough to hold the interior pages of a
    /// 1M-entry partition so upserts do not re-read them from the OS.
    static let cacheKiB = 65_536
    /// Keeps the -wal file from staying at the size of the largest checkpoint ever written.
    static let journalSizeLimit = 64 << 20

    /// Pragmas every connection needs (they are per-connection, not stored in the file).
    ///
    /// synchronous=NORMAL is safe here because with WAL it only skips the fsync at commit; the
    /// WAL is still fsynced at each checkpoint and frames are checksummed. A power loss can drop
    /// the last committed checkpoints, but each checkpoint carries its partition's state and its
    /// next offset in one transaction, so what survives is always an older *consistent* pair and
    /// the daemon re-consumes from that older offset (outputs are at-least-once with
    /// deterministic ids). It never yields a torn state. A process crash (not power loss) loses
    /// nothing: committed frames are already in the OS page cache.
    static let connectionPragmas = """
        PRAGMA synchronous = NORMAL;
        PRAGMA cache_size = -\(cacheKiB);
        PRAGMA temp_store = MEMORY;
        PRAGMA journal_size_limit = \(journalSizeLimit);
        """
}
