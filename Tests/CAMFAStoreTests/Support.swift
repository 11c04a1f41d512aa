import Foundation
import Testing
@testable import CAMFAStore

/// A fresh directory under the system temp dir, removed when the value goes away.
final class TempDirectory {
    let path: String

    init() {
        var template = Array((NSTemporaryDirectory() + "camfa-store-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed: errno \(errno)")
        path = String(cString: made!)
    }

    /// Where the store puts its database file.
    var database: String { path + "/" + CheckpointStore.fileName }

    deinit {
        // Undo any chmod a test made so the directory can be removed.
        _ = chmod(path, 0o755)
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Order the store promises: UTF-8 byte order (SQLite's BINARY collation).
func utf8Less(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

struct Entry: Equatable, CustomStringConvertible {
    var keyspace: String, key: String, value: [UInt8]
    var description: String { "\(keyspace)/\(key)=\(value)" }
}

struct UserRow: Equatable {
    var user: String, value: [UInt8]
}

/// An Equatable view of a checkpoint, so tests can compare whole states.
struct Snapshot: Equatable {
    var partition: PartitionID
    var epoch: Int64
    var nextOffset: Int64
    var metadata: [UInt8]
    var entries: [Entry]
    var users: [UserRow]

    init(_ c: PartitionCheckpoint) {
        partition = c.partition
        epoch = c.epoch
        nextOffset = c.nextOffset
        metadata = c.metadata
        entries = c.entries.map { Entry(keyspace: $0.keyspace, key: $0.key, value: $0.value) }
        users = c.users.map { UserRow(user: $0.user, value: $0.value) }
    }

    init(partition: PartitionID, epoch: Int64, nextOffset: Int64, metadata: [UInt8],
         entries: [String: [String: [UInt8]]], users: [String: [UInt8]]) {
        self.partition = partition
        self.epoch = epoch
        self.nextOffset = nextOffset
        self.metadata = metadata
        self.entries = entries.flatMap { keyspace, keys in
            keys.map { Entry(keyspace: keyspace, key: $0.key, value: $0.value) }
        }.sorted { $0.keyspace == $1.keyspace ? utf8Less($0.key, $1.key) : utf8Less($0.keyspace, $1.keyspace) }
        self.users = users.map { UserRow(user: $0.key, value: $0.value) }.sorted { utf8Less($0.user, $1.user) }
    }
}

func snapshot(_ store: CheckpointStore, _ p: PartitionID) throws -> Snapshot? {
    try store.load(p).map(Snapshot.init)
}

/// Deterministic bytes so failures are reproducible.
func bytes(_ seed: Int, count: Int) -> [UInt8] {
    var state = UInt64(truncatingIfNeeded: seed) &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return UInt8(truncatingIfNeeded: state)
    }
}

var runningAsRoot: Bool { geteuid() == 0 }

/// Flips one bit `offset` bytes into the first copy of `marker` in the database file: damage
/// inside a row's payload that SQLite's page structure does not show.
func flipBit(in database: String, at offset: Int, into marker: [UInt8]) throws {
    var file = Array(try Data(contentsOf: URL(fileURLWithPath: database)))
    let found = try #require(file.indices.first { file[$0...].starts(with: marker) })
    file[found + offset] ^= 0x01
    try Data(file).write(to: URL(fileURLWithPath: database))
}
