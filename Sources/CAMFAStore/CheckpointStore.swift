import CSQLite
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Durable per-partition checkpoints in `DIR/camfa-state.sqlite3` (SQLite, WAL mode).
///
/// Threading: every method may be called from any thread. The store holds two connections,
/// each behind its own lock:
/// - the writer (`write`, `claim`) — writes of one store are serialized, so a writer thread can
///   run them while the poll thread keeps polling;
/// - the reader (`load`, `partitions`) — under WAL a reader works on a snapshot and neither
///   blocks nor is blocked by the writer, so restoring one partition does not stall
///   checkpoints of the others.
/// `claim` shares the writer lock, so it waits for a write in progress (a full checkpoint of
/// 1M entries takes seconds); a poll thread that must not stall should hand claims to the
/// writer thread too. `load` never waits for writes of this store.
/// Several stores (threads or processes) may share a directory: SQLite's file locks serialize
/// their write transactions, waiting up to the busy timeout before failing with `.busy`.
///
/// Fault handling: a failed `write` or `claim` rolls back, so the previous checkpoint stays
/// intact. After read-only, I/O, corruption or open failures the connection is dropped and the
/// next call reopens it, so the same instance recovers once the fault is cleared.
public final class CheckpointStore: Sendable {
    public let directory: String
    /// The database file, named in every error message.
    public let path: String
    private let busyTimeoutMilliseconds: Int32
    private let writer = Mutex(Slot())
    private let reader = Mutex(Slot())
    /// Copies committed WAL frames into the database file on a thread of its own, so a write
    /// returns once its transaction is durable in the WAL instead of also paying that copy
    /// (as long again for a large base). SQLite's automatic merge is off on the writer.
    private let merger = Mutex(Slot())
    private let mergeQueue = DispatchQueue(label: "camfa-store-wal-merge")
    private let mergeRequested = Atomic(false)
    private static let onMergeQueue = DispatchSpecificKey<Bool>()

    private struct Slot: ~Copyable {
        var connection: Connection?
        var closed = false
        /// Test hook: open the writer with SQLITE_OPEN_READONLY, which is how SQLite itself opens
        /// a write-protected file, to exercise `.readOnly` even as root (root ignores chmod).
        var simulateReadOnly = false
    }

    public static let fileName = "camfa-state.sqlite3"

    /// Opens or creates `directory/camfa-state.sqlite3`. The writer connection is opened here
    /// so that a corrupt or foreign file is reported at startup rather than at the first write.
    public init(directory: String, busyTimeoutMilliseconds: Int32 = 5_000) throws(StoreError) {
        self.directory = directory
        self.path = directory.hasSuffix("/") ? directory + Self.fileName : directory + "/" + Self.fileName
        self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
        mergeQueue.setSpecific(key: Self.onMergeQueue, value: true)
        try makeDirectories(directory, path: path)
        try writer.withLock { (slot: inout Slot) throws(StoreError) in
            slot.connection = try openConnection(role: .writer, readOnly: false)
        }
    }

    deinit { close() }

    /// Closes the connections; waits for calls in progress. Later calls fail with `.open`.
    public func close() {
        // The last reference may be dropped by the merge itself (deinit on its queue).
        waitForWALMerge()
        merger.withLock { slot in
            slot.connection?.close()
            slot.connection = nil
            slot.closed = true
        }
        writer.withLock { slot in
            slot.connection?.close()
            slot.connection = nil
            slot.closed = true
        }
        reader.withLock { slot in
            slot.connection?.close()
            slot.connection = nil
            slot.closed = true
        }
    }

    // MARK: - Writes

    /// Writes one checkpoint in one transaction. Throws `.fenced` (and writes nothing) when the
    /// stored epoch of the partition is newer than `c.epoch`; otherwise the stored epoch becomes
    /// `c.epoch`.
    public func write(_ c: CheckpointWrite) throws(StoreError) {
        try withWriter { connection throws(StoreError) in
            try checkWritable()
            // IMMEDIATE takes the write lock before the epoch is read, so no other process can
            // claim the partition between the fencing check and the commit.
            try connection.exec("BEGIN IMMEDIATE")
            let pid = try fence(connection, c.partition, epoch: c.epoch)

            let header = try connection.prepared(
                "UPDATE partitions SET epoch = ?2, next_offset = ?3, metadata = ?4, sum = ?5, "
                    + "changelog_seq = coalesce(?6, changelog_seq), changelog_offset = coalesce(?7, changelog_offset) WHERE pid = ?1")
            sqlite3_bind_int64(header, 1, pid)
            sqlite3_bind_int64(header, 2, c.epoch)
            sqlite3_bind_int64(header, 3, c.nextOffset)
            if let position = c.changelog {
                sqlite3_bind_int64(header, 6, position.seq)
                sqlite3_bind_int64(header, 7, position.offset)
            } else {
                sqlite3_bind_null(header, 6)
                sqlite3_bind_null(header, 7)
            }
            let rc = c.metadata.withUnsafeBufferPointer { bytes in
                var bound = bindBlob(header, 4, bytes)
                if bound == SQLITE_OK { bound = sqlite3_bind_int64(header, 5, headerChecksum(c.nextOffset, bytes)) }
                return bound == SQLITE_OK ? stepAndReset(header) : bound
            }
            try check(connection, rc, "writing the checkpoint header of \(c.partition)")

            let hasBase: Bool
            if c.full {
                try runWithPID(connection, "DELETE FROM segments WHERE pid = ?1", pid, "clearing segments of \(c.partition)")
                try runWithPID(connection, "DELETE FROM entries WHERE pid = ?1", pid, "clearing entries of \(c.partition)")
                try runWithPID(connection, "DELETE FROM users WHERE pid = ?1", pid, "clearing users of \(c.partition)")
                try insertSegments(connection, pid, c)
                hasBase = !c.segments.isEmpty
            } else {
                hasBase = try self.hasBase(connection, pid, c.partition)
            }
            try deleteEntries(connection, pid, c, tombstones: hasBase)
            try deleteUsers(connection, pid, c, tombstones: hasBase)
            try upsertEntries(connection, pid, c)
            try upsertUsers(connection, pid, c)
            try connection.exec("COMMIT")
        }
        requestWALMerge()
    }

    /// Waits until the WAL merges requested so far have run: for measurements that must not
    /// overlap with one.
    public func waitForWALMerge() {
        if DispatchQueue.getSpecific(key: Self.onMergeQueue) != true { mergeQueue.sync {} }
    }

    /// At most one merge queued: a merge copies every frame committed before it starts.
    private func requestWALMerge() {
        guard !mergeRequested.exchange(true, ordering: .acquiringAndReleasing) else { return }
        mergeQueue.async { [self] in
            mergeRequested.store(false, ordering: .releasing)
            // PASSIVE never waits for readers or the writer; what it cannot copy now, the next
            // merge (or the last close) does. A failure (read-only, disk full) is the writer's
            // to report: its own transactions fail the same way.
            _ = try? merger.withLock { (slot: inout Slot) throws(StoreError) in
                try run(&slot, role: .merger) { connection throws(StoreError) in try connection.exec("PRAGMA wal_checkpoint(PASSIVE)") }
            }
        }
    }

    /// Records that `epoch` owns the partition, so a writer with an older epoch is fenced even
    /// before the new owner's first checkpoint. Throws `.fenced` if a newer epoch already owns it.
    /// Does not create a checkpoint: `load` still returns nil until the first `write`.
    public func claim(_ p: PartitionID, epoch: Int64) throws(StoreError) {
        try withWriter { connection throws(StoreError) in
            try checkWritable()
            try connection.exec("BEGIN IMMEDIATE")
            let pid = try fence(connection, p, epoch: epoch)
            let statement = try connection.prepared("UPDATE partitions SET epoch = ?2 WHERE pid = ?1 AND epoch < ?2")
            sqlite3_bind_int64(statement, 1, pid)
            sqlite3_bind_int64(statement, 2, epoch)
            try check(connection, stepAndReset(statement), "claiming \(p)")
            try connection.exec("COMMIT")
        }
    }

    /// Deletes the partition's checkpoint (header, entries, users) so its next owner starts
    /// it empty, per auto.offset.reset: the operator's way out of a corrupt checkpoint. The
    /// epoch row stays, so an owner that claimed the partition earlier is still fenced.
    /// Returns false when there was nothing stored for it.
    @discardableResult
    public func drop(_ p: PartitionID) throws(StoreError) -> Bool {
        try withWriter { connection throws(StoreError) -> Bool in
            try checkWritable()
            try connection.exec("BEGIN IMMEDIATE")
            let select = try connection.prepared("SELECT pid FROM partitions WHERE topic = ?1 AND part = ?2")
            var rc = bindTextCopy(select, 1, p.topic)
            if rc == SQLITE_OK { rc = sqlite3_bind_int(select, 2, p.partition) }
            try check(connection, rc, "binding \(p)")
            let step = sqlite3_step(select)
            let pid: Int64? = step == SQLITE_ROW ? sqlite3_column_int64(select, 0) : nil
            sqlite3_reset(select)
            sqlite3_clear_bindings(select)
            if step != SQLITE_ROW && step != SQLITE_DONE { throw connection.error(step, doing: "finding \(p)") }
            guard let pid else {
                try connection.exec("COMMIT")
                return false
            }
            try runWithPID(connection, "DELETE FROM segments WHERE pid = ?1", pid, "dropping segments of \(p)")
            try runWithPID(connection, "DELETE FROM entries WHERE pid = ?1", pid, "dropping entries of \(p)")
            try runWithPID(connection, "DELETE FROM users WHERE pid = ?1", pid, "dropping users of \(p)")
            try runWithPID(connection, "UPDATE partitions SET next_offset = NULL, metadata = NULL, sum = NULL WHERE pid = ?1",
                           pid, "dropping the checkpoint header of \(p)")
            try connection.exec("COMMIT")
            return true
        }
    }

    /// Inside the write transaction: refuses an older epoch and returns the partition's pid,
    /// creating its row (epoch only, no checkpoint yet) when it is new.
    private func fence(_ connection: Connection, _ p: PartitionID, epoch: Int64) throws(StoreError) -> Int64 {
        let select = try connection.prepared("SELECT pid, epoch FROM partitions WHERE topic = ?1 AND part = ?2")
        let found: (pid: Int64, epoch: Int64)?
        var rc = bindTextCopy(select, 1, p.topic)
        if rc == SQLITE_OK { rc = sqlite3_bind_int(select, 2, p.partition) }
        try check(connection, rc, "binding \(p)")
        let step = sqlite3_step(select)
        if step == SQLITE_ROW {
            found = (sqlite3_column_int64(select, 0), sqlite3_column_int64(select, 1))
        } else {
            found = nil
        }
        sqlite3_reset(select)
        sqlite3_clear_bindings(select)
        if step != SQLITE_ROW && step != SQLITE_DONE { throw connection.error(step, doing: "reading the epoch of \(p)") }

        if let found {
            guard found.epoch <= epoch else {
                throw StoreError(
                    code: .fenced,
                    message: "\(path): \(p) is owned by epoch \(found.epoch); refusing epoch \(epoch)")
            }
            return found.pid
        }
        let insert = try connection.prepared("INSERT INTO partitions(topic, part, epoch) VALUES(?1, ?2, ?3)")
        let inserted = withUTF8(p.topic) { topic in
            var rc = bindText(insert, 1, topic)
            if rc == SQLITE_OK { rc = sqlite3_bind_int(insert, 2, p.partition) }
            if rc == SQLITE_OK { rc = sqlite3_bind_int64(insert, 3, epoch) }
            return rc == SQLITE_OK ? stepAndReset(insert) : rc
        }
        sqlite3_clear_bindings(insert)
        try check(connection, inserted, "registering \(p)")
        return sqlite3_last_insert_rowid(connection.handle)
    }

    private func runWithPID(_ connection: Connection, _ sql: String, _ pid: Int64, _ what: String) throws(StoreError) {
        let statement = try connection.prepared(sql)
        sqlite3_bind_int64(statement, 1, pid)
        try check(connection, stepAndReset(statement), what)
    }

    // Key strings are never put in error messages: they are IP addresses and user ids.

    private func hasBase(_ connection: Connection, _ pid: Int64, _ p: PartitionID) throws(StoreError) -> Bool {
        let statement = try connection.prepared("SELECT 1 FROM segments WHERE pid = ?1 LIMIT 1")
        sqlite3_bind_int64(statement, 1, pid)
        let rc = stepAndReset(statement)
        if rc != SQLITE_ROW && rc != SQLITE_DONE { throw connection.error(rc, doing: "reading the base of \(p)") }
        return rc == SQLITE_ROW
    }

    private func insertSegments(_ connection: Connection, _ pid: Int64, _ c: CheckpointWrite) throws(StoreError) {
        guard !c.segments.isEmpty else { return }
        let statement = try connection.prepared("INSERT INTO segments(pid, seq, value, sum) VALUES(?1, ?2, ?3, ?4)")
        defer { sqlite3_clear_bindings(statement) }
        sqlite3_bind_int64(statement, 1, pid)
        for (seq, segment) in c.segments.enumerated() {
            let rc = segment.withUnsafeBufferPointer { value in
                var rc = sqlite3_bind_int64(statement, 2, Int64(seq))
                if rc == SQLITE_OK { rc = bindBlob(statement, 3, value) }
                if rc == SQLITE_OK { rc = sqlite3_bind_int64(statement, 4, segmentChecksum(Int64(seq), of: Int64(c.segments.count), value)) }
                return rc == SQLITE_OK ? stepAndReset(statement) : rc
            }
            try check(connection, rc, "writing segment \(seq) of \(c.partition)")
        }
    }

    /// Without a base a delete removes the row; with one it becomes a tombstone.
    private func deleteEntries(_ connection: Connection, _ pid: Int64, _ c: CheckpointWrite, tombstones: Bool) throws(StoreError) {
        guard !c.deletes.isEmpty else { return }
        let statement = try connection.prepared(tombstones
            ? """
            INSERT INTO entries(pid, keyspace, key, value, sum) VALUES(?1, ?2, ?3, x'', ?4)
            ON CONFLICT(pid, keyspace, key) DO UPDATE SET value = excluded.value, sum = excluded.sum
            """
            : "DELETE FROM entries WHERE pid = ?1 AND keyspace = ?2 AND key = ?3")
        defer { sqlite3_clear_bindings(statement) }
        sqlite3_bind_int64(statement, 1, pid)
        let keys = SortedKeys(count: c.deletes.count, group: { c.deletes[$0].keyspace }, key: { c.deletes[$0].key })
        let rc = keys.forEach({ keyspace, key, _, _ in
            var rc = bindText(statement, 2, keyspace)
            if rc == SQLITE_OK { rc = bindText(statement, 3, key) }
            if rc == SQLITE_OK && tombstones {
                rc = sqlite3_bind_int64(statement, 4, Checksum.of(keyspace, key, UnsafeBufferPointer(start: nil, count: 0)))
            }
            return rc == SQLITE_OK ? stepAndReset(statement) : rc
        }, done: SQLITE_DONE)
        try check(connection, rc, "deleting entries of \(c.partition)")
    }

    private func deleteUsers(_ connection: Connection, _ pid: Int64, _ c: CheckpointWrite, tombstones: Bool) throws(StoreError) {
        guard !c.userDeletes.isEmpty else { return }
        let statement = try connection.prepared(tombstones
            ? """
            INSERT INTO users(pid, user, value, sum) VALUES(?1, ?2, x'', ?3)
            ON CONFLICT(pid, user) DO UPDATE SET value = excluded.value, sum = excluded.sum
            """
            : "DELETE FROM users WHERE pid = ?1 AND user = ?2")
        defer { sqlite3_clear_bindings(statement) }
        sqlite3_bind_int64(statement, 1, pid)
        let keys = SortedKeys(count: c.userDeletes.count, group: { _ in nil }, key: { c.userDeletes[$0] })
        let rc = keys.forEach({ _, user, _, _ in
            var rc = bindText(statement, 2, user)
            if rc == SQLITE_OK && tombstones {
                rc = sqlite3_bind_int64(statement, 3, Checksum.of(user, UnsafeBufferPointer(start: nil, count: 0)))
            }
            return rc == SQLITE_OK ? stepAndReset(statement) : rc
        }, done: SQLITE_DONE)
        try check(connection, rc, "deleting users of \(c.partition)")
    }

    private func upsertEntries(_ connection: Connection, _ pid: Int64, _ c: CheckpointWrite) throws(StoreError) {
        guard !c.upserts.isEmpty else { return }
        // After a full checkpoint's DELETE the range is empty and SortedKeys removed duplicates,
        // so the cheaper plain INSERT applies; otherwise rows may exist and need the upsert.
        let statement = try connection.prepared(c.full
            ? "INSERT INTO entries(pid, keyspace, key, value, sum) VALUES(?1, ?2, ?3, ?4, ?5)"
            : """
            INSERT INTO entries(pid, keyspace, key, value, sum) VALUES(?1, ?2, ?3, ?4, ?5)
            ON CONFLICT(pid, keyspace, key) DO UPDATE SET value = excluded.value, sum = excluded.sum
            """)
        defer { sqlite3_clear_bindings(statement) }
        sqlite3_bind_int64(statement, 1, pid)
        let keyOffset = MemoryLayout<(keyspace: String, key: String, value: [UInt8])>.offset(of: \.key)!
        let keys = c.upserts.withUnsafeBufferPointer { upserts in
            SortedKeys(count: upserts.count, group: { upserts[$0].keyspace }, key: { upserts[$0].key },
                       prefetchKey: { prefetchStringStorage(in: upserts, at: $0, offset: keyOffset) })
        }
        let valueOffset = MemoryLayout<(keyspace: String, key: String, value: [UInt8])>.offset(of: \.value)!
        let rc = c.upserts.withUnsafeBufferPointer { upserts in
            keys.forEach(
                prefetching: UnsafeRawPointer(upserts.baseAddress),
                stride: MemoryLayout<(keyspace: String, key: String, value: [UInt8])>.stride,
                { keyspace, key, index, upcoming in
                if let upcoming { prefetchArrayStorage(in: upserts, at: upcoming, offset: valueOffset) }
                return upserts[index].value.withUnsafeBufferPointer { value in
                    var rc = bindText(statement, 2, keyspace)
                    if rc == SQLITE_OK { rc = bindText(statement, 3, key) }
                    if rc == SQLITE_OK { rc = bindBlob(statement, 4, value) }
                    if rc == SQLITE_OK { rc = sqlite3_bind_int64(statement, 5, Checksum.of(keyspace, key, value)) }
                    return rc == SQLITE_OK ? stepAndReset(statement) : rc
                }
            }, done: SQLITE_DONE)
        }
        try check(connection, rc, "writing entries of \(c.partition)")
    }

    private func upsertUsers(_ connection: Connection, _ pid: Int64, _ c: CheckpointWrite) throws(StoreError) {
        guard !c.userUpserts.isEmpty else { return }
        let statement = try connection.prepared(c.full
            ? "INSERT INTO users(pid, user, value, sum) VALUES(?1, ?2, ?3, ?4)"
            : """
            INSERT INTO users(pid, user, value, sum) VALUES(?1, ?2, ?3, ?4)
            ON CONFLICT(pid, user) DO UPDATE SET value = excluded.value, sum = excluded.sum
            """)
        defer { sqlite3_clear_bindings(statement) }
        sqlite3_bind_int64(statement, 1, pid)
        let keys = SortedKeys(count: c.userUpserts.count, group: { _ in nil }, key: { c.userUpserts[$0].user })
        let valueOffset = MemoryLayout<(user: String, value: [UInt8])>.offset(of: \.value)!
        let rc = c.userUpserts.withUnsafeBufferPointer { users in
            keys.forEach(
                prefetching: UnsafeRawPointer(users.baseAddress),
                stride: MemoryLayout<(user: String, value: [UInt8])>.stride,
                { _, user, index, upcoming in
                if let upcoming { prefetchArrayStorage(in: users, at: upcoming, offset: valueOffset) }
                return users[index].value.withUnsafeBufferPointer { value in
                    var rc = bindText(statement, 2, user)
                    if rc == SQLITE_OK { rc = bindBlob(statement, 3, value) }
                    if rc == SQLITE_OK { rc = sqlite3_bind_int64(statement, 4, Checksum.of(user, value)) }
                    return rc == SQLITE_OK ? stepAndReset(statement) : rc
                }
            }, done: SQLITE_DONE)
        }
        try check(connection, rc, "writing users of \(c.partition)")
    }

    // MARK: - Reads

    /// The partition's stored state, or nil when it has never been checkpointed. Read in one
    /// transaction, so entries, users and offset come from the same checkpoint; any damage found
    /// while reading throws `.corrupt` and nothing is returned.
    public func load(_ p: PartitionID) throws(StoreError) -> PartitionCheckpoint? {
        try withReader { connection throws(StoreError) -> PartitionCheckpoint? in
            try connection.exec("BEGIN")
            let header = try connection.prepared(
                "SELECT pid, epoch, next_offset, metadata, sum, changelog_seq, changelog_offset FROM partitions WHERE topic = ?1 AND part = ?2")
            defer { sqlite3_reset(header); sqlite3_clear_bindings(header) }
            var bound = bindTextCopy(header, 1, p.topic)
            if bound == SQLITE_OK { bound = sqlite3_bind_int(header, 2, p.partition) }
            try check(connection, bound, "binding \(p)")
            let step = sqlite3_step(header)
            if step == SQLITE_DONE || (step == SQLITE_ROW && sqlite3_column_type(header, 2) == SQLITE_NULL) {
                try connection.exec("COMMIT")
                return nil
            }
            guard step == SQLITE_ROW else { throw connection.error(step, doing: "reading the checkpoint of \(p)") }
            let pid = sqlite3_column_int64(header, 0)
            let epoch = sqlite3_column_int64(header, 1)
            let nextOffset = sqlite3_column_int64(header, 2)
            let metadataType = sqlite3_column_type(header, 3)
            guard metadataType == SQLITE_BLOB || metadataType == SQLITE_NULL else {
                throw corrupt("the checkpoint header of \(p) has a metadata column of type \(metadataType)")
            }
            let metadata = columnBlob(header, 3)
            let headerSum = metadata.withUnsafeBufferPointer { headerChecksum(nextOffset, $0) }
            guard sqlite3_column_type(header, 4) == SQLITE_INTEGER, sqlite3_column_int64(header, 4) == headerSum else {
                throw corrupt("the checkpoint header of \(p) does not match its checksum")
            }

            let changelog = sqlite3_column_type(header, 5) == SQLITE_INTEGER && sqlite3_column_type(header, 6) == SQLITE_INTEGER
                ? ChangelogPosition(seq: sqlite3_column_int64(header, 5), offset: sqlite3_column_int64(header, 6)) : nil
            let segments = try loadSegments(connection, pid, p)
            let entries = try loadEntries(connection, pid, p)
            let users = try loadUsers(connection, pid, p)
            try connection.exec("COMMIT")
            return PartitionCheckpoint(
                partition: p, epoch: epoch, nextOffset: nextOffset, metadata: metadata,
                entries: entries, users: users, segments: segments, changelog: changelog)
        }
    }

    private func loadSegments(_ connection: Connection, _ pid: Int64, _ p: PartitionID) throws(StoreError) -> [[UInt8]] {
        let statement = try connection.prepared("SELECT seq, value, sum FROM segments WHERE pid = ?1 ORDER BY seq")
        defer { sqlite3_reset(statement) }
        sqlite3_bind_int64(statement, 1, pid)
        var segments: [[UInt8]] = []
        var sums: [Int64] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw connection.error(rc, doing: "reading segments of \(p)") }
            guard sqlite3_column_type(statement, 0) == SQLITE_INTEGER, sqlite3_column_type(statement, 1) == SQLITE_BLOB,
                  sqlite3_column_int64(statement, 0) == Int64(segments.count)
            else { throw corrupt("segment \(segments.count) of \(p) is missing or has columns of unexpected types") }
            segments.append(Array(columnBytes(statement, 1, text: false)))
            sums.append(sqlite3_column_int64(statement, 2))
        }
        // Each checksum covers the number of segments too, so a lost tail is caught.
        for (seq, segment) in segments.enumerated() {
            let expected = segment.withUnsafeBufferPointer { segmentChecksum(Int64(seq), of: Int64(segments.count), $0) }
            guard sums[seq] == expected else {
                throw corrupt("segment \(seq) of \(p) does not match its checksum (or segments are missing)")
            }
        }
        return segments
    }

    private func loadEntries(
        _ connection: Connection, _ pid: Int64, _ p: PartitionID
    ) throws(StoreError) -> [(keyspace: String, key: String, value: [UInt8])] {
        let statement = try connection.prepared(
            "SELECT keyspace, key, value, sum FROM entries WHERE pid = ?1 ORDER BY keyspace, key")
        defer { sqlite3_reset(statement) }
        sqlite3_bind_int64(statement, 1, pid)
        var entries: [(keyspace: String, key: String, value: [UInt8])] = []
        // There are a handful of keyspaces and up to millions of keys: share one String per
        // keyspace instead of allocating one per row.
        var keyspace = ""
        var keyspaceBytes: [UInt8] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw connection.error(rc, doing: "reading entries of \(p)") }
            guard sqlite3_column_type(statement, 0) == SQLITE_TEXT,
                  sqlite3_column_type(statement, 1) == SQLITE_TEXT,
                  sqlite3_column_type(statement, 2) == SQLITE_BLOB
            else { throw corrupt("an entry of \(p) has columns of unexpected types") }
            let rawKeyspace = columnBytes(statement, 0, text: true)
            let rawKey = columnBytes(statement, 1, text: true)
            let rawValue = columnBytes(statement, 2, text: false)
            guard sqlite3_column_int64(statement, 3) == Checksum.of(rawKeyspace, rawKey, rawValue) else {
                throw corrupt("an entry of \(p) does not match its checksum")
            }
            if !rawKeyspace.elementsEqual(keyspaceBytes) {
                keyspaceBytes = Array(rawKeyspace)
                keyspace = String(decoding: rawKeyspace, as: UTF8.self)
            }
            entries.append((keyspace, String(decoding: rawKey, as: UTF8.self), Array(rawValue)))
        }
        return entries
    }

    private func loadUsers(
        _ connection: Connection, _ pid: Int64, _ p: PartitionID
    ) throws(StoreError) -> [(user: String, value: [UInt8])] {
        let statement = try connection.prepared("SELECT user, value, sum FROM users WHERE pid = ?1 ORDER BY user")
        defer { sqlite3_reset(statement) }
        sqlite3_bind_int64(statement, 1, pid)
        var users: [(user: String, value: [UInt8])] = []
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw connection.error(rc, doing: "reading users of \(p)") }
            guard sqlite3_column_type(statement, 0) == SQLITE_TEXT,
                  sqlite3_column_type(statement, 1) == SQLITE_BLOB
            else { throw corrupt("a user of \(p) has columns of unexpected types") }
            let rawUser = columnBytes(statement, 0, text: true)
            let rawValue = columnBytes(statement, 1, text: false)
            guard sqlite3_column_int64(statement, 2) == Checksum.of(rawUser, rawValue) else {
                throw corrupt("a user of \(p) does not match its checksum")
            }
            users.append((String(decoding: rawUser, as: UTF8.self), Array(rawValue)))
        }
        return users
    }

    /// Every partition with a checkpoint (claimed-only partitions are left out), ordered by
    /// topic and partition.
    public func partitions() throws(StoreError) -> [(PartitionID, epoch: Int64, nextOffset: Int64)] {
        try withReader { connection throws(StoreError) in
            let statement = try connection.prepared("""
                SELECT topic, part, epoch, next_offset FROM partitions
                WHERE next_offset IS NOT NULL ORDER BY topic, part
                """)
            defer { sqlite3_reset(statement) }
            var result: [(PartitionID, epoch: Int64, nextOffset: Int64)] = []
            while true {
                let rc = sqlite3_step(statement)
                if rc == SQLITE_DONE { break }
                guard rc == SQLITE_ROW else { throw connection.error(rc, doing: "listing partitions") }
                guard let topic = columnText(statement, 0) else { throw corrupt("a partition row has no topic") }
                let id = PartitionID(topic: topic, partition: sqlite3_column_int(statement, 1))
                result.append((id, sqlite3_column_int64(statement, 2), sqlite3_column_int64(statement, 3)))
            }
            return result
        }
    }

    // MARK: - Connections

    private enum Role { case writer, reader, merger }

    private func withWriter<R: Sendable>(_ body: (Connection) throws(StoreError) -> R) throws(StoreError) -> R {
        try writer.withLock { (slot: inout Slot) throws(StoreError) -> R in
            try run(&slot, role: .writer, body)
        }
    }

    private func withReader<R: Sendable>(_ body: (Connection) throws(StoreError) -> R) throws(StoreError) -> R {
        try reader.withLock { (slot: inout Slot) throws(StoreError) -> R in
            try run(&slot, role: .reader, body)
        }
    }

    private func run<R>(
        _ slot: inout Slot, role: Role, _ body: (Connection) throws(StoreError) -> R
    ) throws(StoreError) -> R {
        guard !slot.closed else { throw StoreError(code: .open, message: "\(path): the store is closed") }
        let connection: Connection
        if let open = slot.connection {
            connection = open
        } else {
            connection = try openConnection(role: role, readOnly: slot.simulateReadOnly)
            slot.connection = connection
        }
        do {
            return try body(connection)
        } catch {
            var healthy = true
            if connection.inTransaction {
                healthy = sqlite3_exec(connection.handle, "ROLLBACK", nil, nil, nil) == SQLITE_OK
            }
            switch error.code {
            case .fenced, .busy, .diskFull:
                // The connection itself is fine; the transaction was rolled back.
                break
            case .readOnly, .io, .corrupt, .open, .schema:
                // SQLite opens a write-protected file read-only and stays that way, and after
                // I/O errors its cached pages are suspect: start from a fresh connection.
                healthy = false
            }
            if !healthy {
                connection.close()
                slot.connection = nil
            }
            throw error
        }
    }

    private func openConnection(role: Role, readOnly: Bool) throws(StoreError) -> Connection {
        let connection = try Connection(
            path: path, readOnly: readOnly, busyTimeoutMilliseconds: busyTimeoutMilliseconds)
        do {
            try configure(connection, role: role)
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    private func configure(_ connection: Connection, role: Role) throws(StoreError) {
        // Reading any header field first turns a non-database file into .corrupt right here.
        var header = try readHeader(connection)
        if role == .writer {
            if (try connection.text("PRAGMA journal_mode"))?.lowercased() != "wal" {
                try switchToWAL(connection)
            }
        }
        try connection.exec(Schema.connectionPragmas)
        if role == .reader { try connection.exec("PRAGMA query_only = ON") }
        if role == .writer { try connection.exec("PRAGMA wal_autocheckpoint = 0") }

        if role == .writer {
            // Another daemon sharing the directory may have created the schema meanwhile:
            // anything but the current header is decided again under the write lock.
            header = try readHeader(connection)
            if header != (Schema.applicationID, Schema.version) { try createSchema(connection) }
        } else if header != (0, 0) {
            try checkSchema(applicationID: header.applicationID, version: header.version)
        }
    }

    /// Both header fields in one statement, so one snapshot: read separately, a concurrent
    /// creator can commit in between and the pair looks like a foreign file (id 0, version 2).
    private func readHeader(_ connection: Connection) throws(StoreError) -> (applicationID: Int64, version: Int64) {
        let row = try connection.integers(
            "SELECT (SELECT application_id FROM pragma_application_id), (SELECT user_version FROM pragma_user_version)")
        return (row.first ?? 0, row.dropFirst().first ?? 0)
    }

    /// Changing the journal mode needs an exclusive lock, and when two connections both hold a
    /// shared lock SQLite answers BUSY at once instead of waiting (to avoid a deadlock), so the
    /// busy timeout does not apply: wait here, within the same timeout.
    private func switchToWAL(_ connection: Connection) throws(StoreError) {
        let deadline = ContinuousClock.now + .milliseconds(Int(busyTimeoutMilliseconds))
        while true {
            do throws(StoreError) {
                // page_size only takes effect on a new file, and must be set before WAL is.
                try connection.exec("PRAGMA page_size = \(Schema.pageSize)")
                let mode = try connection.text("PRAGMA journal_mode = WAL")
                guard mode?.lowercased() == "wal" else {
                    throw StoreError(code: .io, message: "\(path): could not switch to WAL mode (got \(mode ?? "nothing"))")
                }
                return
            } catch let error where error.code == .busy && ContinuousClock.now < deadline {
                usleep(10_000)
            }
        }
    }

    private func checkSchema(applicationID: Int64, version: Int64) throws(StoreError) {
        guard applicationID == Schema.applicationID else {
            throw StoreError(code: .schema, message: "\(path): not a camfa state database (application_id \(applicationID))")
        }
        guard version == Schema.version else {
            throw StoreError(
                code: .schema,
                message: "\(path): schema version \(version) is not supported (this build reads version \(Schema.version))")
        }
    }

    private func createSchema(_ connection: Connection) throws(StoreError) {
        do throws(StoreError) {
            // Another process may be creating it at the same moment: decide under the write lock.
            try connection.exec("BEGIN IMMEDIATE")
            let applicationID = try connection.integer("PRAGMA application_id") ?? 0
            let version = try connection.integer("PRAGMA user_version") ?? 0
            if applicationID == 0 && version == 0 {
                let tables = try connection.integer("SELECT count(*) FROM sqlite_schema") ?? 0
                guard tables == 0 else {
                    throw StoreError(code: .schema, message: "\(path): not a camfa state database (it has other tables)")
                }
                try connection.exec(Schema.create)
            } else if applicationID == Schema.applicationID && (version == 1 || version == 2) {
                if version == 1 { try connection.exec(Schema.upgradeFrom1) }
                let present = try connection.integer("SELECT count(*) FROM pragma_table_info('partitions') WHERE name LIKE 'changelog_%'") ?? 0
                if present == 0 {
                    for column in Schema.changelogColumns { try connection.exec("ALTER TABLE partitions ADD COLUMN \(column) INTEGER") }
                }
                try connection.exec("PRAGMA user_version = \(Schema.version)")
            } else {
                try checkSchema(applicationID: applicationID, version: version)
            }
            try connection.exec("COMMIT")
        } catch {
            if connection.inTransaction { sqlite3_exec(connection.handle, "ROLLBACK", nil, nil, nil) }
            throw error
        }
    }

    /// An open connection keeps write access through its file descriptors after the directory or
    /// file is chmod'ed read-only, so SQLite alone would keep writing. An operator who makes the
    /// state read-only means "stop writing": check permissions before each transaction.
    /// (Root passes access(2) regardless of mode bits; a read-only file system is still caught.)
    private func checkWritable() throws(StoreError) {
        for target in [directory, path] where access(target, W_OK) != 0 {
            let code = errno
            guard code == EACCES || code == EROFS || code == EPERM else { continue }
            throw StoreError(
                code: .readOnly,
                message: "\(target) is not writable (errno \(code): \(String(cString: strerror(code))))")
        }
    }

    private func check(_ connection: Connection, _ rc: Int32, _ what: String) throws(StoreError) {
        if rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW { throw connection.error(rc, doing: what) }
    }

    private func corrupt(_ what: String) -> StoreError {
        StoreError(code: .corrupt, message: "\(path): \(what)")
    }

    // MARK: - Test hooks

    /// Reopens the writer read-only (or read-write again), as SQLite does for a write-protected
    /// file; lets tests exercise `.readOnly` classification and recovery even when run as root.
    func simulateReadOnlyForTesting(_ on: Bool) {
        writer.withLock { slot in
            slot.simulateReadOnly = on
            slot.connection?.close()
            slot.connection = nil
        }
    }

    /// Runs SQL on the writer connection (e.g. `PRAGMA max_page_count` to provoke SQLITE_FULL)
    /// and returns the first column of the first row.
    func writerIntegerForTesting(_ sql: String) throws(StoreError) -> Int64? {
        try withWriter { connection throws(StoreError) in try connection.integer(sql) }
    }
}

/// The checkpoint header's checksum covers what `write` sets together: offset and metadata.
/// (The epoch is left out: `claim` changes it alone.)
private func headerChecksum(_ nextOffset: Int64, _ metadata: UnsafeBufferPointer<UInt8>) -> Int64 {
    var sum = Checksum()
    sum.add(nextOffset)
    sum.add(metadata)
    return sum.value
}

/// The sequence number is covered so that swapped segments are caught, and the count so
/// that missing last ones are.
private func segmentChecksum(_ seq: Int64, of count: Int64, _ value: UnsafeBufferPointer<UInt8>) -> Int64 {
    var sum = Checksum()
    sum.add(seq)
    sum.add(count)
    sum.add(value)
    return sum.value
}

@inline(__always)
private func stepAndReset(_ statement: OpaquePointer) -> Int32 {
    let rc = sqlite3_step(statement)
    sqlite3_reset(statement)
    return rc
}

/// `mkdir -p` for the state directory.
private func makeDirectories(_ directory: String, path: String) throws(StoreError) {
    var prefix = directory.hasPrefix("/") ? "/" : ""
    for component in directory.split(separator: "/") {
        prefix += component
        if mkdir(prefix, 0o755) != 0 {
            let code = errno
            var info = stat()
            if code == EEXIST, stat(prefix, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
                prefix += "/"
                continue
            }
            // EACCES on a parent we only traverse is fine if the directory already exists further down.
            if code == EACCES || code == EROFS {
                if stat(directory, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR { return }
            }
            throw StoreError(
                code: code == EACCES || code == EROFS ? .readOnly : .open,
                message: "\(path): cannot create directory \(prefix) (errno \(code): \(String(cString: strerror(code))))")
        }
        prefix += "/"
    }
}
