import CAMFACore
import CAMFAStore
import Dispatch
import Foundation

/// When a partition is due for a checkpoint: after `interval` milliseconds or `events`
/// processed events since its last one, whichever comes first. Pure, so it is tested alone.
public struct CheckpointSchedule: Sendable, Equatable {
    public var interval: Int64
    public var events: Int
    public private(set) var eventsSince = 0
    public private(set) var lastAt: Int64

    public init(interval: Int64, events: Int, now: Int64) {
        self.interval = interval
        self.events = events
        lastAt = now
    }

    public mutating func processed(_ n: Int = 1) { eventsSince += n }

    public func isDue(now: Int64) -> Bool {
        eventsSince >= events || (eventsSince > 0 && now - lastAt >= interval)
    }

    /// A checkpoint was taken (its changes handed to the writer) at `now`.
    public mutating func taken(now: Int64) {
        eventsSince = 0
        lastAt = now
    }
}

extension PartitionChanges {
    /// `self` followed by `newer`, as one write: what a retry after a failed write must
    /// store so the failed changes are not lost. Per key the newer operation wins.
    ///
    /// A failed full write stays full, its base kept and the newer rows applied on top
    /// (their deletions kept as well: the key may be inside the base).
    public func merged(with newer: PartitionChanges) -> PartitionChanges {
        if newer.full { return newer }
        var entries: [EntryName: [UInt8]?] = [:]
        var order: [EntryName] = []
        func put(_ k: EntryName, _ v: [UInt8]?) {
            if entries.updateValue(v, forKey: k) == nil { order.append(k) }
        }
        for d in deletes { put(EntryName(keyspace: d.keyspace, key: d.key), nil) }
        for u in upserts { put(EntryName(keyspace: u.keyspace, key: u.key), u.value) }
        for d in newer.deletes { put(EntryName(keyspace: d.keyspace, key: d.key), nil) }
        for u in newer.upserts { put(EntryName(keyspace: u.keyspace, key: u.key), u.value) }
        var users: [String: [UInt8]?] = [:]
        var userOrder: [String] = []
        func putUser(_ k: String, _ v: [UInt8]?) {
            if users.updateValue(v, forKey: k) == nil { userOrder.append(k) }
        }
        for d in userDeletes { putUser(d, nil) }
        for u in userUpserts { putUser(u.user, u.value) }
        for d in newer.userDeletes { putUser(d, nil) }
        for u in newer.userUpserts { putUser(u.user, u.value) }
        var out = PartitionChanges(full: full, metadata: newer.metadata)
        out.segments = segments
        // A full write without a base empties the partition: its deletions are moot.
        let keepDeletes = !full || !segments.isEmpty
        for k in order {
            if let v = entries[k]!.flatMap({ $0 }) { out.upserts.append((k.keyspace, k.key, v)) }
            else if keepDeletes { out.deletes.append((k.keyspace, k.key)) }
        }
        for k in userOrder {
            if let v = users[k]!.flatMap({ $0 }) { out.userUpserts.append((k, v)) }
            else if keepDeletes { out.userDeletes.append(k) }
        }
        return out
    }

    private struct EntryName: Hashable {
        var keyspace: String
        var key: String
    }
}

extension PartitionState {
    /// Encoding and decoding a partition's base one unit (keyspace, users) per core.
    public static let onEveryCore: ParallelFor = { n, body in DispatchQueue.concurrentPerform(iterations: n, execute: body) }
}

/// One partition's checkpoint as the poll thread hands it over: changes taken but not yet
/// encoded, plus the changes of a failed earlier write, which go in front.
struct PendingCheckpoint: Sendable {
    var partition: PartitionID
    var epoch: Int64
    var nextOffset: Int64
    var carry: PartitionChanges?
    var snapshot: PartitionChangeSnapshot

    /// Encodes (the expensive part, on the writer's thread, a full one on every core) and merges.
    func changes() -> PartitionChanges {
        let taken = snapshot.encoded(parallel: PartitionState.onEveryCore)
        return carry.map { $0.merged(with: taken) } ?? taken
    }
}

/// Runs checkpoint encoding and writes off the poll thread, one at a time in submission
/// order (a serial queue), so the poll thread only pays for `takeChangeSnapshot` (copies of
/// the changed records). Results wait in a mailbox the poll thread empties on each loop turn.
final class CheckpointWriter: @unchecked Sendable {
    struct Completion {
        var partition: Int32
        var epoch: Int64
        var nextOffset: Int64
        var error: StoreError?
        var seconds: Double
        /// On failure, the encoded changes: the next write of the partition must carry them.
        var failed: PartitionChanges?
        /// A rebase after the write failed; the checkpoint itself stands (its rows stay).
        var rebaseError: String?
        var rebaseSeconds: Double?
    }

    let store: CheckpointStore
    /// The replica in Kafka, written before the local store: a local checkpoint is never
    /// ahead of the changelog.
    let changelog: ChangelogTopic?
    private let queue = DispatchQueue(label: "camfa-checkpoint-writer")
    private let lock = NSLock()
    private var done: [Completion] = []
    /// Test hook: while this file exists every write fails as read-only (tests run as root,
    /// for whom chmod does not make SQLite read-only).
    private let readOnlyFlag = ProcessInfo.processInfo.environment["CAMFA_TEST_STORE_READONLY_FILE"]

    /// Test hook: each write waits this long first, so a test can freeze the process while
    /// a write is pending (the stale-owner case fencing exists for).
    private let delaySeconds = Double(ProcessInfo.processInfo.environment["CAMFA_TEST_CHECKPOINT_DELAY_MS"] ?? "").map { $0 / 1000 }

    init(store: CheckpointStore, changelog: ChangelogTopic? = nil) {
        self.store = store
        self.changelog = changelog
    }

    func submit(_ pending: PendingCheckpoint) {
        queue.async { [self] in
            let completion = run(pending)
            lock.withLock { done.append(completion) }
        }
    }

    /// Encodes and writes on the caller's thread after everything submitted before
    /// (revoke, shutdown).
    /// No rebase here, even when the take asked for one: it would rewrite the whole
    /// partition inside a revoke or a shutdown, holding SQLite's write lock the next owner's
    /// claim waits for. The next owner counts the rows it restores and rebases itself.
    func writeNow(_ pending: PendingCheckpoint) -> Completion {
        queue.sync { run(pending, rebaseAllowed: false) }
    }

    private func run(_ pending: PendingCheckpoint, rebaseAllowed: Bool = true) -> Completion {
        let start = DispatchTime.now().uptimeNanoseconds
        let changes = pending.changes()
        let write = CheckpointWrite(
            partition: pending.partition, epoch: pending.epoch, nextOffset: pending.nextOffset, metadata: changes.metadata,
            upserts: changes.upserts, deletes: changes.deletes, userUpserts: changes.userUpserts,
            userDeletes: changes.userDeletes, full: changes.full, segments: changes.segments)
        var failure: StoreError?
        do throws(StoreError) { try perform(write) } catch { failure = error }
        var completion = Completion(
            partition: pending.partition.partition, epoch: pending.epoch, nextOffset: pending.nextOffset,
            error: failure, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9,
            failed: failure == nil ? nil : changes)
        if failure == nil && pending.snapshot.rebase && rebaseAllowed {
            let rebaseStart = DispatchTime.now().uptimeNanoseconds
            do { try rebase(pending.partition, epoch: pending.epoch) } catch { completion.rebaseError = "\(error)" }
            completion.rebaseSeconds = Double(DispatchTime.now().uptimeNanoseconds - rebaseStart) / 1e9
        }
        return completion
    }

    func rebase(_ p: PartitionID, epoch: Int64) throws {
        try checkReadOnlyHook()
        try store.rebase(p, epoch: epoch)
    }

    /// Waits until every submitted write has finished.
    func barrier() { queue.sync {} }

    func takeCompletions() -> [Completion] {
        lock.withLock {
            defer { done.removeAll() }
            return done
        }
    }

    private func perform(_ write: CheckpointWrite) throws(StoreError) {
        if let delaySeconds { Thread.sleep(forTimeInterval: delaySeconds) }
        try checkReadOnlyHook()
        var write = write
        if let changelog {
            do { write.changelog = try changelog.write(write) } catch {
                throw StoreError(code: .io, message: "\(error)")
            }
        }
        try store.write(write)
    }

    /// The read-only test hook, also applied to restores (claims write the store).
    func checkReadOnlyHook() throws(StoreError) {
        if let flag = readOnlyFlag, FileManager.default.fileExists(atPath: flag) {
            throw StoreError(code: .readOnly, message: "\(store.path) is read-only (test hook \(flag) exists)")
        }
    }
}

extension CheckpointStore {
    /// Folds the rows stored on top of the partition's base into a new base: the stored
    /// checkpoint is read back and rewritten whole, same offset, same state, so a failure
    /// anywhere leaves the previous (equally valid) checkpoint in place. The epoch fences it
    /// like any write.
    public func rebase(_ p: PartitionID, epoch: Int64) throws {
        guard let stored = try load(p) else { return }
        let segments = try PartitionState.rebasedSegments(
            metadata: stored.metadata, segments: stored.segments, entries: stored.entries, users: stored.users)
        try write(CheckpointWrite(
            partition: p, epoch: epoch, nextOffset: stored.nextOffset, metadata: stored.metadata, full: true, segments: segments))
    }
}

/// A daemon failure with a stable code, for callers and logs.
public struct DaemonError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case stateStore
    }

    public var code: Code
    public var message: String
    public var description: String { "\(code.rawValue): \(message)" }
}
