import CAMFAKafka
import CAMFAStore
import Foundation
import Logging

/// A task's state, replicated to its changelog partition (`topics.changelog`, one
/// partition per input partition, compacted), so that whichever instance owns the task next
/// restores it from Kafka instead of re-reading the input topic. The local SQLite store
/// stays the checkpoint the dumps and rebases work on, written after the changelog.
///
/// Threading: `write` runs on the checkpoint writer's queue, `restore` on the poll thread
/// (inside the rebalance callback); the positions between them are behind a lock.
final class ChangelogTopic: @unchecked Sendable {
    /// Where a task's next batch goes.
    struct Position: Sendable, Equatable {
        var epoch: Int64
        var nextSeq: Int64
        var generation: Int64
        var chunks: UInt32
    }

    let topic: String
    private let producer: KafkaProducer
    private let config: KafkaConfig
    private let logger: Logger
    private let lock = NSLock()
    private var positions: [Int32: Position] = [:]
    /// How long one batch may take to be acknowledged before the checkpoint fails.
    private let ackTimeoutMs: Int32

    init(topic: String, config: KafkaConfig, ackTimeoutMs: Int32 = 30_000, logger: Logger) throws(KafkaError) {
        self.topic = topic
        self.config = config
        self.ackTimeoutMs = ackTimeoutMs
        self.logger = logger
        producer = try KafkaProducer(config: config, lingerMs: 1, logger: logger)
    }

    func position(_ p: Int32) -> Position? { lock.withLock { positions[p] } }

    /// Writes one checkpoint as a batch: rows first, acknowledged, then the marker, so a
    /// marker is never in the log without every row it vouches for. The batch's sequence
    /// number is used up even when the write fails: its rows may be in the log, and the
    /// retry (which carries the same keys) goes past them.
    @discardableResult
    func write(_ w: CheckpointWrite) throws(ChangelogError) -> ChangelogPosition {
        let p = w.partition.partition
        guard var position = position(p), position.epoch == w.epoch else {
            throw ChangelogError(code: .unavailable, message: "partition \(p) of \(topic) is not restored by epoch \(w.epoch)")
        }
        let stamp = ChangelogRecord.Stamp(epoch: w.epoch, seq: position.nextSeq,
                                          generation: w.full ? position.generation + 1 : position.generation)
        position.nextSeq += 1
        lock.withLock { positions[p] = position }
        let records = ChangelogRecord.batch(w, stamp: stamp, chunks: position.chunks)
        try send(Array(records.dropLast()), partition: p)
        let offset = try send([records.last!], partition: p)[0]
        position.generation = stamp.generation
        if case .marker(let m) = records.last! { position.chunks = m.chunks }
        lock.withLock { positions[p] = position }
        return ChangelogPosition(seq: stamp.seq, offset: offset)
    }

    /// Produces and waits until every record is acknowledged; the offsets in order.
    @discardableResult
    private func send(_ records: [ChangelogRecord], partition p: Int32) throws(ChangelogError) -> [Int64] {
        guard !records.isEmpty else { return [] }
        _ = producer.drainDeliveryReports()
        do {
            for (i, r) in records.enumerated() {
                try producer.produce(topic: topic, partition: p, key: r.key, value: r.value, token: UInt64(i))
            }
            var offsets = [Int64](repeating: -1, count: records.count)
            var acknowledged = 0
            let deadline = Date().addingTimeInterval(Double(ackTimeoutMs) / 1000)
            while acknowledged < records.count {
                guard Date() < deadline else {
                    throw ChangelogError(code: .unavailable, message: "\(topic)[\(p)]: \(records.count - acknowledged) records unacknowledged after \(ackTimeoutMs) ms")
                }
                for report in producer.poll(timeoutMs: 50) {
                    if let error = report.error { throw ChangelogError(code: .unavailable, message: "\(topic)[\(p)]: \(error)") }
                    offsets[Int(report.token)] = report.offset
                    acknowledged += 1
                }
            }
            return offsets
        } catch let e as ChangelogError {
            throw e
        } catch {
            throw ChangelogError(code: .unavailable, message: "\(topic)[\(p)]: \(error)")
        }
    }

    /// Rebuilds partition `p` from its changelog and takes it over: reads it to its end,
    /// picks an epoch past every one in the log (and at least `epochFloor`), rewrites what
    /// an unfinished batch left (`ChangelogReplay.repairKeys`) and writes a marker of the
    /// new epoch, which fences earlier owners for every reader. Then checks that nobody
    /// wrote between the read and that marker (a previous owner that has not stopped yet);
    /// if someone did, the restore fails and is retried.
    func restore(partition p: Int32, input: PartitionID, epochFloor: Int64, local: PartitionCheckpoint?) throws(ChangelogError) -> Restored {
        let start = DispatchTime.now().uptimeNanoseconds
        let tp = TopicPartition(topic, p)
        let consumer: KafkaConsumer
        // Assign-only, never in a group: the plain range assignor, so that closing it never
        // runs the cooperative-sticky teardown (librdkafka 2.0.2 asserts in it when a member
        // is closed before its first assignment).
        var restoreConfig = config
        restoreConfig.properties.append(("partition.assignment.strategy", "range"))
        do { consumer = try KafkaConsumer(config: restoreConfig, groupID: "camfa-changelog-restore", logger: logger) } catch {
            throw ChangelogError(code: .unavailable, message: "\(topic)[\(p)]: \(error)")
        }
        defer { _ = consumer.close(timeoutSeconds: 2) }
        let (low, high) = try watermarks(consumer, tp)
        func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }

        // This host wrote the last marker: its local checkpoint is current.
        if let local, let at = local.changelog, at.offset == high - 1, at.offset >= low {
            var last: ChangelogRecord?
            try read(consumer, tp, from: at.offset, to: high) { key, value throws(ChangelogError) in last = try ChangelogRecord(key: key, value: value) }
            // (The local epoch is the claim just made, not the marker's.)
            if case .marker(let m) = last, m.stamp.seq == at.seq, m.nextOffset == local.nextOffset {
                let stamp = ChangelogRecord.Stamp(epoch: max(epochFloor, m.stamp.epoch + 1), seq: m.stamp.seq + 1, generation: m.stamp.generation)
                var checkpoint = local
                checkpoint.epoch = stamp.epoch
                checkpoint.changelog = try claim(p, after: m, stamp: stamp)
                return Restored(epoch: stamp.epoch, checkpoint: checkpoint, fromLocal: true,
                                stats: RestoreStats(records: 1, ignored: 0, repaired: 0, seconds: elapsed()))
            }
        }

        var replay = ChangelogReplay()
        try read(consumer, tp, from: low, to: high) { key, value throws(ChangelogError) in try replay.apply(key: key, value: value) }
        var checkpoint = try replay.checkpoint(partition: input)
        let epoch = max(epochFloor, replay.maxEpoch + 1)
        let stamp = ChangelogRecord.Stamp(epoch: epoch, seq: replay.maxSeq + 1, generation: replay.marker?.stamp.generation ?? 0)
        let repairs = try replay.repairRows(stamp: stamp)
        try send(repairs, partition: p)
        let claimed = try replay.marker.map { m throws(ChangelogError) in try claim(p, after: m, stamp: stamp) }
        // Nothing but our own records between the end we read and our marker.
        var end = claimed?.offset
        if end == nil && !repairs.isEmpty { end = try watermarks(consumer, tp).high - 1 }
        if let end, end >= high {
            var foreign = 0
            try read(consumer, tp, from: high, to: end + 1) { key, value throws(ChangelogError) in
                if let r = try ChangelogRecord(key: key, value: value), r.stamp.epoch != epoch { foreign += 1 }
            }
            if foreign > 0 {
                throw ChangelogError(code: .foreignWrites, message: "\(topic)[\(p)]: \(foreign) records of another owner arrived during the restore; retrying")
            }
        }
        if claimed == nil {
            lock.withLock { positions[p] = Position(epoch: epoch, nextSeq: stamp.seq + 1, generation: stamp.generation, chunks: 0) }
        }
        checkpoint?.epoch = epoch
        checkpoint?.changelog = claimed
        return Restored(epoch: epoch, checkpoint: checkpoint, fromLocal: false,
                        stats: RestoreStats(records: replay.records, ignored: replay.ignored, repaired: repairs.count, seconds: elapsed()))
    }

    /// The new owner's marker, repeating the checkpoint of `m` under its own stamp: it
    /// fences earlier epochs for every reader; the task's next batch follows it.
    private func claim(_ p: Int32, after m: ChangelogRecord.Marker, stamp: ChangelogRecord.Stamp) throws(ChangelogError) -> ChangelogPosition {
        let offset = try send([.marker(.init(stamp: stamp, nextOffset: m.nextOffset, full: false, chunks: m.chunks, metadata: m.metadata))], partition: p)[0]
        lock.withLock { positions[p] = Position(epoch: stamp.epoch, nextSeq: stamp.seq + 1, generation: stamp.generation, chunks: m.chunks) }
        return ChangelogPosition(seq: stamp.seq, offset: offset)
    }

    struct Restored: Sendable {
        var epoch: Int64
        /// Its `changelog` is the new owner's marker (nil when the log had no checkpoint).
        var checkpoint: PartitionCheckpoint?
        /// The local checkpoint was current: one record read instead of the partition.
        var fromLocal: Bool
        var stats: RestoreStats
    }

    struct RestoreStats: Sendable {
        var records: Int
        var ignored: Int
        var repaired: Int
        var seconds: Double
    }

    func forget(_ p: Int32) { _ = lock.withLock { positions.removeValue(forKey: p) } }

    private func watermarks(_ consumer: KafkaConsumer, _ tp: TopicPartition) throws(ChangelogError) -> (low: Int64, high: Int64) {
        do { return try consumer.watermarks(tp, timeoutMs: 10_000) } catch {
            throw ChangelogError(code: .unavailable, message: "\(tp.topic)[\(tp.partition)]: watermarks: \(error)")
        }
    }

    /// Every record of [from, to) in order.
    private func read(_ consumer: KafkaConsumer, _ tp: TopicPartition, from: Int64, to: Int64,
                      _ body: ([UInt8], [UInt8]?) throws(ChangelogError) -> Void) throws(ChangelogError) {
        guard to > from else { return }
        do { try consumer.assign([tp: from]) } catch { throw ChangelogError(code: .unavailable, message: "\(tp.topic)[\(tp.partition)]: \(error)") }
        let batch = KafkaBatch()
        var next = from
        var idle = Date()
        while next < to {
            consumer.poll(into: batch, maxMessages: 4096, timeoutMs: 100)
            if batch.records.isEmpty {
                // A compacted log has gaps: the records before `to` may be gone.
                if let at = try? consumer.position([tp])[tp], at >= to { break }
                if Date().timeIntervalSince(idle) > 30 {
                    throw ChangelogError(code: .unavailable, message: "\(tp.topic)[\(tp.partition)]: no records for 30 s at offset \(next) of \(to)")
                }
                continue
            }
            idle = Date()
            for r in batch.records where r.offset >= next && r.offset < to {
                let key = r.key.map { Array($0) } ?? []
                let value = r.value.map { Array($0) }
                try body(key, value)
                next = r.offset + 1
            }
        }
        batch.release()
    }
}

extension PartitionCheckpoint {
    /// This checkpoint as one write that replaces a partition's whole stored state.
    func asFullWrite(epoch: Int64) -> CheckpointWrite {
        CheckpointWrite(
            partition: partition, epoch: epoch, nextOffset: nextOffset, metadata: metadata,
            upserts: entries.filter { !$0.value.isEmpty }, deletes: entries.filter { $0.value.isEmpty }.map { ($0.keyspace, $0.key) },
            userUpserts: users.filter { !$0.value.isEmpty }, userDeletes: users.filter { $0.value.isEmpty }.map(\.user),
            full: true, segments: segments, changelog: changelog)
    }
}
