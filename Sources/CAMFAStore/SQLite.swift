import CSQLite

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One SQLite connection with its cache of prepared statements.
///
/// Not thread-safe by itself: CheckpointStore only touches a Connection while holding the lock
/// of the slot that owns it. The library is opened with SQLITE_OPEN_NOMUTEX because that lock
/// already serializes every call, so SQLite's own per-connection mutex would be pure overhead.
final class Connection {
    let path: String
    private(set) var handle: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]

    /// Opens (creating if needed) the database at `path` and prepares it for use.
    init(path: String, readOnly: Bool, busyTimeoutMilliseconds: Int32) throws(StoreError) {
        self.path = path
        var db: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE))
            | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let error = Connection.makeError(rc: rc, db: db, path: path, doing: "opening")
            sqlite3_close_v2(db)
            throw error
        }
        handle = db
        // Extended codes distinguish e.g. SQLITE_READONLY_DBMOVED from a plain I/O failure.
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, busyTimeoutMilliseconds)
    }

    deinit { close() }

    func close() {
        for (_, statement) in statements { sqlite3_finalize(statement) }
        statements.removeAll()
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
    }

    var inTransaction: Bool {
        guard let handle else { return false }
        return sqlite3_get_autocommit(handle) == 0
    }

    /// Runs SQL that returns no rows we care about (pragmas, DDL, BEGIN/COMMIT).
    func exec(_ sql: String) throws(StoreError) {
        guard let handle else { throw closedError() }
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        if rc != SQLITE_OK { throw error(rc, doing: "running \(sql.prefix(60))") }
    }

    /// Returns the first column of the first row of `sql` as an integer (for pragmas).
    func integer(_ sql: String) throws(StoreError) -> Int64? {
        let statement = try prepared(sql)
        defer { sqlite3_reset(statement) }
        let rc = sqlite3_step(statement)
        if rc == SQLITE_ROW { return sqlite3_column_int64(statement, 0) }
        if rc == SQLITE_DONE { return nil }
        throw error(rc, doing: "running \(sql.prefix(60))")
    }

    /// Every column of the first row of `sql` as integers (empty when there is no row).
    func integers(_ sql: String) throws(StoreError) -> [Int64] {
        let statement = try prepared(sql)
        defer { sqlite3_reset(statement) }
        let rc = sqlite3_step(statement)
        if rc == SQLITE_ROW { return (0..<sqlite3_column_count(statement)).map { sqlite3_column_int64(statement, $0) } }
        if rc == SQLITE_DONE { return [] }
        throw error(rc, doing: "running \(sql.prefix(60))")
    }

    /// Returns the first column of the first row of `sql` as text (for pragmas).
    func text(_ sql: String) throws(StoreError) -> String? {
        let statement = try prepared(sql)
        defer { sqlite3_reset(statement) }
        let rc = sqlite3_step(statement)
        if rc == SQLITE_ROW { return columnText(statement, 0) }
        if rc == SQLITE_DONE { return nil }
        throw error(rc, doing: "running \(sql.prefix(60))")
    }

    /// A prepared statement for `sql`, compiled once per connection and reused; callers reset it.
    func prepared(_ sql: String) throws(StoreError) -> OpaquePointer {
        if let cached = statements[sql] { return cached }
        guard let handle else { throw closedError() }
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else {
            throw error(rc, doing: "preparing \(sql.prefix(60))")
        }
        statements[sql] = statement
        return statement
    }

    func error(_ rc: Int32, doing what: String) -> StoreError {
        Connection.makeError(rc: rc, db: handle, path: path, doing: what)
    }

    func closedError() -> StoreError {
        StoreError(code: .open, message: "\(path): connection is closed")
    }

    /// Maps a SQLite result code to the store's fault classes; the message names the file so a
    /// log line is actionable on its own.
    static func makeError(rc: Int32, db: OpaquePointer?, path: String, doing what: String) -> StoreError {
        let extended = db.map { sqlite3_extended_errcode($0) } ?? rc
        // The connection's last error can be stale (e.g. after a failed step, reset reports again);
        // trust it only when its primary code agrees with what the call returned.
        let code = (extended & 0xff) == (rc & 0xff) ? extended : rc
        let detail = db.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) }
            ?? String(cString: sqlite3_errstr(rc))
        let systemErrno = db.map { sqlite3_system_errno($0) } ?? 0
        let kind: StoreError.Code
        switch code & 0xff {
        case SQLITE_READONLY: kind = .readOnly
        case SQLITE_FULL: kind = .diskFull
        case SQLITE_CORRUPT, SQLITE_NOTADB: kind = .corrupt
        case SQLITE_BUSY, SQLITE_LOCKED: kind = .busy
        case SQLITE_IOERR:
            // SQLite reports ENOSPC during a write as SQLITE_FULL, but a failed fsync or a
            // short write on a full disk can surface as an I/O error with errno set.
            kind = systemErrno == ENOSPC ? .diskFull : (systemErrno == EROFS ? .readOnly : .io)
        case SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_AUTH:
            kind = (systemErrno == EACCES || systemErrno == EPERM || systemErrno == EROFS) ? .readOnly : .open
        case SQLITE_SCHEMA, SQLITE_MISMATCH: kind = .schema
        default: kind = .io
        }
        var message = "\(path): \(what) failed: \(detail) (SQLite code \(code)"
        if systemErrno != 0 { message += ", errno \(systemErrno): \(String(cString: strerror(systemErrno)))" }
        message += ")"
        return StoreError(code: kind, message: message, resultCode: code)
    }
}

// MARK: - Binding and reading without copies

/// Binds UTF-8 text that stays valid until the statement is stepped and reset (SQLITE_STATIC).
@inline(__always)
func bindText(_ statement: OpaquePointer, _ index: Int32, _ bytes: UnsafeBufferPointer<UInt8>) -> Int32 {
    // A nil pointer would bind SQL NULL, and an empty String may hand out no storage at all.
    guard bytes.count > 0, let base = bytes.baseAddress else {
        return sqlite3_bind_text(statement, index, "", 0, sqliteTransient)
    }
    guard bytes.count <= Int(Int32.max) else { return SQLITE_TOOBIG }
    return base.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
        sqlite3_bind_text(statement, index, $0, Int32(bytes.count), nil)
    }
}

/// Binds a blob that stays valid until the statement is stepped and reset (SQLITE_STATIC).
@inline(__always)
func bindBlob(_ statement: OpaquePointer, _ index: Int32, _ bytes: UnsafeBufferPointer<UInt8>) -> Int32 {
    // Zero-length blobs must be bound explicitly: a nil pointer would bind NULL, not X''.
    guard bytes.count > 0, let base = bytes.baseAddress else {
        return sqlite3_bind_zeroblob(statement, index, 0)
    }
    // SQLite's limit is far below this; refuse instead of trapping in the Int32 conversion.
    guard bytes.count <= Int(Int32.max) else { return SQLITE_TOOBIG }
    return sqlite3_bind_blob(statement, index, base, Int32(bytes.count), nil)
}

/// Binds a copy of `string`: for values bound now and stepped later, outside any closure that
/// could keep the bytes alive (small strings live inline, so their bytes are a temporary).
func bindTextCopy(_ statement: OpaquePointer, _ index: Int32, _ string: String) -> Int32 {
    withUTF8(string) { bytes in
        guard bytes.count > 0, let base = bytes.baseAddress else {
            return sqlite3_bind_text(statement, index, "", 0, sqliteTransient)
        }
        return base.withMemoryRebound(to: CChar.self, capacity: bytes.count) {
            sqlite3_bind_text(statement, index, $0, Int32(bytes.count), sqliteTransient)
        }
    }
}

/// SQLITE_TRANSIENT: SQLite copies the value before the call returns.
var sqliteTransient: sqlite3_destructor_type {
    unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)
}

/// Calls `body` with the string's UTF-8 bytes without copying native strings.
@inline(__always)
func withUTF8<R>(_ string: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
    var string = string
    return string.withUTF8(body)
}

func columnText(_ statement: OpaquePointer, _ index: Int32) -> String? {
    guard let pointer = sqlite3_column_text(statement, index) else { return nil }
    let count = Int(sqlite3_column_bytes(statement, index))
    return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
}

/// A column's bytes, valid until the statement steps again; empty for NULL or zero length.
func columnBytes(_ statement: OpaquePointer, _ index: Int32, text: Bool) -> UnsafeBufferPointer<UInt8> {
    // The pointer must be fetched before the length (SQLite may convert the value).
    let pointer: UnsafeRawPointer? = text
        ? sqlite3_column_text(statement, index).map { UnsafeRawPointer($0) }
        : sqlite3_column_blob(statement, index)
    let count = Int(sqlite3_column_bytes(statement, index))
    guard let pointer, count > 0 else { return UnsafeBufferPointer(start: nil, count: 0) }
    return UnsafeBufferPointer(start: pointer.assumingMemoryBound(to: UInt8.self), count: count)
}

func columnBlob(_ statement: OpaquePointer, _ index: Int32) -> [UInt8] {
    // column_blob must be called before column_bytes, and returns nil for a zero-length blob.
    guard let pointer = sqlite3_column_blob(statement, index) else { return [] }
    let count = Int(sqlite3_column_bytes(statement, index))
    return Array(UnsafeRawBufferPointer(start: pointer, count: count))
}
