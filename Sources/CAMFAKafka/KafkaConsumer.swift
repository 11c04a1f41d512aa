import CRdKafka
import Foundation
import Logging

/// Told about assignment changes synchronously on the consumer's poll thread, from
/// inside `KafkaConsumer.poll` (or `close`), before librdkafka applies them.
public protocol KafkaRebalanceDelegate: AnyObject {
    /// Partitions are about to be added to this consumer. Restore their state and return
    /// the offset to start each one at; a partition missing from the result starts at the
    /// group's committed offset (or `auto.offset.reset`). `KafkaOffset.beginning` / `.end`
    /// are accepted. The offsets are applied by the assign call itself (never a seek).
    func assigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64]
    /// Partitions are about to be removed in an orderly rebalance or close. They are still
    /// owned: checkpoint and commit here. Messages of these partitions not yet handed out
    /// are dropped from the batch being filled.
    func revoked(_ partitions: [TopicPartition])
    /// The assignment was lost (session timeout, fenced member): other members may already
    /// own these partitions, so drop their state without writing it.
    func lost(_ partitions: [TopicPartition])
}

/// Something other than a message that the consumer reports in a batch.
public enum KafkaConsumerEvent: Sendable, Equatable {
    /// Only with `enable.partition.eof=true`: `offset` is the next offset to arrive.
    case partitionEOF(TopicPartition, offset: Int64)
    /// A consume, commit or rebalance error. librdkafka recovers from most on its own
    /// (transport, leader changes); they are reported so the owner can log and count them.
    case error(KafkaError, TopicPartition?)
}

/// One message, borrowed from librdkafka: `key` and `value` point into librdkafka's
/// buffer and are valid only until the batch that holds them is polled into again or
/// released. Copy (`[UInt8](value)`) what must outlive that.
public struct KafkaRecord {
    public let topic: String
    public let partition: Int32
    public let offset: Int64
    public let key: UnsafeRawBufferPointer?
    public let value: UnsafeRawBufferPointer?
    /// Milliseconds since the epoch, if the broker provided one.
    public let timestamp: Int64?
    fileprivate let message: UnsafeMutablePointer<rd_kafka_message_t>

    public var topicPartition: TopicPartition { TopicPartition(topic, partition) }

    /// The last header named `name` (nil if absent); cheap for messages without headers.
    public func header(_ name: String) -> [UInt8]? {
        var hdrs: OpaquePointer? = nil
        guard rd_kafka_message_headers(message, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs else { return nil }
        var value: UnsafeRawPointer? = nil
        var size = 0
        guard rd_kafka_header_get_last(hdrs, name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        guard let value else { return [] }
        return [UInt8](UnsafeRawBufferPointer(start: value, count: size))
    }

    /// Whether the record has any header; cheap for the (usual) record without.
    public var hasHeaders: Bool {
        var hdrs: OpaquePointer? = nil
        guard rd_kafka_message_headers(message, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs else { return false }
        return rd_kafka_header_cnt(hdrs) > 0
    }

    /// Parsed on demand: most messages are processed without looking at headers.
    public func headers() -> [(String, [UInt8]?)] {
        var hdrs: OpaquePointer? = nil
        guard rd_kafka_message_headers(message, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs else { return [] }
        var out: [(String, [UInt8]?)] = []
        var idx = 0
        while true {
            var name: UnsafePointer<CChar>? = nil
            var value: UnsafeRawPointer? = nil
            var size = 0
            guard rd_kafka_header_get_all(hdrs, idx, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR else { break }
            let bytes = value.map { [UInt8](UnsafeRawBufferPointer(start: $0, count: size)) }
            out.append((name.map { String(cString: $0) } ?? "", bytes))
            idx += 1
        }
        return out
    }
}

/// A reusable batch that `KafkaConsumer.poll` fills. It owns the librdkafka messages behind
/// its records until the next poll into it, `release()`, or the consumer's `close()`.
/// Owned by the consumer's poll thread like the consumer itself.
public final class KafkaBatch {
    public private(set) var records: [KafkaRecord] = []
    public private(set) var events: [KafkaConsumerEvent] = []

    public init(capacity: Int = 1024) {
        records.reserveCapacity(capacity)
    }

    deinit { release() }

    public var isEmpty: Bool { records.isEmpty && events.isEmpty }

    /// Returns the messages to librdkafka; records read before are no longer valid.
    public func release() {
        for (i, r) in records.enumerated() where !retained.contains(i) { rd_kafka_message_destroy(r.message) }
        records.removeAll(keepingCapacity: true)
        events.removeAll(keepingCapacity: true)
        retained.removeAll(keepingCapacity: true)
    }

    /// Indexes of records handed to a `RetainedRecord`, which destroys their messages.
    private var retained: Set<Int> = []

    /// Keeps record `index` valid past this batch: its message now belongs to the result.
    /// Every retained record must be gone before the consumer closes (librdkafka waits for
    /// its messages when the handle is destroyed).
    public func retain(_ index: Int) -> RetainedRecord {
        precondition(retained.insert(index).inserted, "record \(index) retained twice")
        return RetainedRecord(records[index])
    }

    fileprivate func append(_ record: KafkaRecord) { records.append(record) }
    fileprivate func append(_ event: KafkaConsumerEvent) { events.append(event) }

    /// Revoked partitions' messages must not reach the owner after `revoked` ran.
    fileprivate func drop(_ partitions: Set<TopicPartition>) {
        guard !partitions.isEmpty else { return }
        records.removeAll { r in
            guard partitions.contains(r.topicPartition) else { return false }
            rd_kafka_message_destroy(r.message)
            return true
        }
    }
}

/// A record kept beyond its batch (`KafkaBatch.retain`): a user task parks records while
/// an event waits for readings from other tasks. Its message goes back to librdkafka when
/// this is released.
public final class RetainedRecord {
    public let record: KafkaRecord
    fileprivate init(_ record: KafkaRecord) { self.record = record }
    deinit { rd_kafka_message_destroy(record.message) }
}

/// A group consumer with manual offsets: `enable.auto.commit=false`,
/// `enable.auto.offset.store=false`, start offsets chosen by the rebalance delegate,
/// bounded prefetch (`queued.max.messages.kbytes`).
///
/// Threading rule: after `init`, the consumer belongs to ONE thread, the poll thread. Every
/// method (`subscribe`, `poll`, `commit`, `pause`, `close`, …) must be called from it, and
/// the delegate is called back only on it, inside `poll` or `close`. The type is
/// `@unchecked Sendable` only so it can be handed to that thread once.
public final class KafkaConsumer: @unchecked Sendable {
    private let rk: OpaquePointer
    private let context: ConsumerContext
    private var closed = false
    private var filling: KafkaBatch?
    /// Batches that may still hold messages: they must be released before rd_kafka_destroy.
    private var batches: [Weak<KafkaBatch>] = []
    public let groupID: String
    public var logger: Logger { context.logger }
    /// The consumer queue, held for `wakeup` from other threads; nil once closed.
    private var wakeQueue: OpaquePointer?
    private let wakeLock = NSLock()
    public weak var delegate: KafkaRebalanceDelegate?

    /// - Parameters:
    ///   - queuedMaxMessagesKBytes: `queued.max.messages.kbytes`, the bound on prefetched
    ///     bytes in the (single) consumer queue across all partitions, so memory does not
    ///     grow with lag. A value given in `config` wins.
    ///   - delegate: held weakly; without one, partitions start at their committed offsets.
    public init(
        config: KafkaConfig, groupID: String, queuedMaxMessagesKBytes: Int = 16384,
        delegate: KafkaRebalanceDelegate? = nil, logger: Logger = Logger(label: "camfa.kafka.consumer")
    ) throws(KafkaError) {
        let conf = try config.makeConf(
            defaults: [
                ("partition.assignment.strategy", "cooperative-sticky"),
                ("queued.max.messages.kbytes", String(queuedMaxMessagesKBytes)),
            ],
            enforced: [
                ("group.id", groupID),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
            ])
        self.groupID = groupID
        self.delegate = delegate
        context = ConsumerContext(logger: logger)
        installLogCallback(conf)
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(context).toOpaque())
        rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, opaque in
            guard let rk, let opaque else { return }
            let context = Unmanaged<ConsumerContext>.fromOpaque(opaque).takeUnretainedValue()
            if let owner = context.owner {
                owner.handleRebalance(err, partitions)
            } else {
                // No owner left to tell: keep librdkafka's join state consistent.
                _ = rd_kafka_assign(rk, nil)
            }
        }
        rd_kafka_conf_set_offset_commit_cb(conf) { _, err, offsets, opaque in
            // Served inside consumer_poll on the poll thread (async commits).
            guard let opaque else { return }
            let context = Unmanaged<ConsumerContext>.fromOpaque(opaque).takeUnretainedValue()
            guard let owner = context.owner else { return }
            if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET {
                owner.report(.error(KafkaError(err, "async offset commit"), nil))
            }
            for e in PartitionList.entries(offsets) where e.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                owner.report(.error(KafkaError(e.err, "async offset commit \(e.tp)"), e.tp))
            }
        }
        rk = try makeHandle(RD_KAFKA_CONSUMER, conf, "consumer")
        context.owner = self
        // Route the main queue (errors, logs served by poll) into the consumer queue, so
        // consumer_poll is the only thing that needs serving.
        rd_kafka_poll_set_consumer(rk)
        wakeQueue = rd_kafka_queue_get_consumer(rk)
    }

    /// Makes a `poll` waiting on another thread return now (with what it has), so work
    /// handed to the poll thread does not wait for the poll timeout. The one method that
    /// may be called from any thread; a no-op once the consumer is closed.
    /// `rd_kafka_queue_yield` on the consumer queue, which `rd_kafka_consumer_poll` waits on.
    public func wakeup() {
        wakeLock.lock()
        defer { wakeLock.unlock() }
        if let q = wakeQueue { rd_kafka_queue_yield(q) }
    }

    /// Owners should `close` explicitly on the poll thread; this is the backstop, and may
    /// block the releasing thread for up to 5.5 s.
    deinit {
        _ = close(timeoutSeconds: 5)
    }

    public func subscribe(_ topics: [String]) throws(KafkaError) {
        let list = rd_kafka_topic_partition_list_new(Int32(topics.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for t in topics { rd_kafka_topic_partition_list_add(list, t, RD_KAFKA_PARTITION_UA) }
        let err = rd_kafka_subscribe(rk, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "subscribe to \(topics)") }
    }

    /// Consumes exactly these partitions from these offsets, outside any group rebalance
    /// (no delegate calls; `subscribe` must not be used as well). For tools and tests that
    /// read a topic from a known position; commits still go to `groupID`.
    public func assign(_ startOffsets: [TopicPartition: Int64]) throws(KafkaError) {
        let list = PartitionList(startOffsets.keys.sorted(), offsets: startOffsets)
        let err = rd_kafka_assign(rk, list.list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "assign \(startOffsets.keys.sorted())") }
    }

    /// Releases `batch`, then fills it with up to `maxMessages` messages: waits up to
    /// `timeoutMs` for the first one, then takes only what is already fetched. Rebalance
    /// callbacks run inside this call.
    /// - Returns: the number of records.
    @discardableResult
    public func poll(into batch: KafkaBatch, maxMessages: Int, timeoutMs: Int32) -> Int {
        batch.release()
        guard !closed else { return 0 }
        track(batch)
        filling = batch
        defer { filling = nil }
        for e in context.takePending() { batch.append(e) }
        var wait = timeoutMs
        var lastTopic: (OpaquePointer, String)? = nil
        while batch.records.count < maxMessages {
            guard let msg = rd_kafka_consumer_poll(rk, wait) else { break }
            wait = 0
            let m = msg.pointee
            var topic = ""
            if let rkt = m.rkt {
                // Consecutive messages are mostly from one topic; skip re-reading its name.
                if let last = lastTopic, last.0 == rkt {
                    topic = last.1
                } else {
                    topic = String(cString: rd_kafka_topic_name(rkt))
                    lastTopic = (rkt, topic)
                }
            }
            if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
                let tp = m.rkt == nil ? nil : TopicPartition(topic, m.partition)
                if m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF, let tp {
                    batch.append(.partitionEOF(tp, offset: m.offset))
                } else {
                    let text = String(cString: rd_kafka_message_errstr(msg))
                    batch.append(.error(KafkaError(code: KafkaErrorCode(m.err), message: "consume\(tp.map { " \($0)" } ?? ""): \(text)"), tp))
                }
                rd_kafka_message_destroy(msg)
                continue
            }
            var tstype = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
            let ts = rd_kafka_message_timestamp(msg, &tstype)
            batch.append(KafkaRecord(
                topic: topic, partition: m.partition, offset: m.offset,
                key: m.key.map { UnsafeRawBufferPointer(start: $0, count: m.key_len) },
                value: m.payload.map { UnsafeRawBufferPointer(start: $0, count: m.len) },
                timestamp: tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? nil : ts,
                message: msg))
        }
        for e in context.takePending() { batch.append(e) }
        return batch.records.count
    }

    /// Commits `offsets` as the NEXT offset to consume per partition (last processed + 1).
    /// A synchronous commit throws the first failing partition's error; an asynchronous
    /// one reports failures as `.error` events in a later batch.
    public func commit(_ offsets: [TopicPartition: Int64], async: Bool = false) throws(KafkaError) {
        guard !offsets.isEmpty else { return }
        let list = PartitionList(offsets.keys, offsets: offsets)
        let err = rd_kafka_commit(rk, list.list, async ? 1 : 0)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "commit offsets") }
        if !async, let e = list.firstError("commit offset of") { throw e }
    }

    /// The group's committed offsets; partitions without one are absent.
    public func committed(_ partitions: [TopicPartition], timeoutMs: Int32 = 5000) throws(KafkaError) -> [TopicPartition: Int64] {
        let list = PartitionList(partitions)
        let err = rd_kafka_committed(rk, list.list, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "fetch committed offsets") }
        if let e = list.firstError("committed offset of") { throw e }
        return Dictionary(uniqueKeysWithValues: list.entries.filter { $0.offset >= 0 }.map { ($0.tp, $0.offset) })
    }

    /// The next offset this consumer will hand out per partition (local, no broker call);
    /// absent before anything was consumed from a partition.
    public func position(_ partitions: [TopicPartition]) throws(KafkaError) -> [TopicPartition: Int64] {
        let list = PartitionList(partitions)
        let err = rd_kafka_position(rk, list.list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "read positions") }
        return Dictionary(uniqueKeysWithValues: list.entries.filter { $0.offset >= 0 }.map { ($0.tp, $0.offset) })
    }

    /// Stops fetching the partitions; messages already fetched but not handed out are
    /// discarded by librdkafka and fetched again after `resume`, so nothing is skipped.
    public func pause(_ partitions: [TopicPartition]) throws(KafkaError) {
        let list = PartitionList(partitions)
        let err = rd_kafka_pause_partitions(rk, list.list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "pause") }
        if let e = list.firstError("pause") { throw e }
        filling?.drop(Set(partitions))
    }

    /// Moves the fetch position of assigned partitions (absolute, or `KafkaOffset.beginning`
    /// / `.end`); messages fetched from the old position are dropped.
    public func seek(_ offsets: [TopicPartition: Int64], timeoutMs: Int32 = 5000) throws(KafkaError) {
        let list = PartitionList(offsets.keys.sorted(), offsets: offsets)
        if let error = rd_kafka_seek_partitions(rk, list.list, timeoutMs) { throw KafkaError(consuming: error, "seek") }
        if let e = list.firstError("seek") { throw e }
    }

    public func resume(_ partitions: [TopicPartition]) throws(KafkaError) {
        let list = PartitionList(partitions)
        let err = rd_kafka_resume_partitions(rk, list.list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "resume") }
        if let e = list.firstError("resume") { throw e }
    }

    /// This member's id in the group, once joined (it changes when the member is fenced and
    /// rejoins, so it can tell one ownership period of a partition from the next).
    public var memberID: String? {
        guard let id = rd_kafka_memberid(rk) else { return nil }
        defer { rd_kafka_mem_free(rk, id) }
        let s = String(cString: id)
        return s.isEmpty ? nil : s
    }

    /// The partitions currently assigned to this consumer.
    public func assignment() throws(KafkaError) -> [TopicPartition] {
        var list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>? = nil
        let err = rd_kafka_assignment(rk, &list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "read assignment") }
        defer { if let list { rd_kafka_topic_partition_list_destroy(list) } }
        return PartitionList.entries(list).map(\.tp).sorted()
    }

    /// Low and high watermarks (high = offset of the next message to be written): lag is
    /// `high - committed`. `cached` answers from the last fetch response without a broker
    /// round trip (-1 when unknown).
    public func watermarks(_ tp: TopicPartition, cached: Bool = false, timeoutMs: Int32 = 5000) throws(KafkaError) -> (low: Int64, high: Int64) {
        var low: Int64 = -1
        var high: Int64 = -1
        let err =
            cached
            ? rd_kafka_get_watermark_offsets(rk, tp.topic, tp.partition, &low, &high)
            : rd_kafka_query_watermark_offsets(rk, tp.topic, tp.partition, &low, &high, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "watermarks of \(tp)") }
        return (low, high)
    }

    /// Leaves the group (revoking through the delegate on this thread), then destroys the
    /// handle, all within about `timeoutSeconds`.
    ///
    /// `rd_kafka_consumer_close` can hang on some paths in librdkafka 2.0.x, so the close
    /// is started with `rd_kafka_consumer_close_queue` and its events are served here until
    /// `rd_kafka_consumer_closed` or the deadline; `rd_kafka_destroy` then runs on a helper
    /// thread that is abandoned (the handle leaked) if it outlives the deadline.
    /// The call returns after at most `timeoutSeconds` plus 0.5 s (the least the destroy
    /// is given). Records of batches this consumer filled are released first.
    /// - Returns: true if both finished within the bound.
    @discardableResult
    public func close(timeoutSeconds: Double = 10) -> Bool {
        guard !closed else { return true }
        closed = true
        wakeLock.lock()
        if let q = wakeQueue { rd_kafka_queue_destroy(q) }
        wakeQueue = nil
        wakeLock.unlock()
        for b in batches { b.value?.release() }
        batches.removeAll()
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        // The close protocol runs on a thread of its own: librdkafka 2.0.2 can block for good
        // inside the (un)assign call a close-time rebalance needs (seen with the mock broker
        // after a cooperative rebalance), and a daemon must still stop within its bound.
        let finished = DispatchSemaphore(value: 0)
        let outcome = UncheckedSendable(CloseOutcome())
        // Unretained: close also runs from deinit, where a reference outliving it would trap.
        // Only an abandoned close (below) can outlive self, and it is stuck in librdkafka.
        let me = UncheckedSendable(Unmanaged.passUnretained(self))
        Thread.detachNewThread {
            outcome.value.clean = me.value.takeUnretainedValue().runCloseProtocol(deadline: deadline, timeoutSeconds: timeoutSeconds)
            finished.signal()
        }
        if finished.wait(timeout: .now() + max(deadline.timeIntervalSinceNow, 0) + 1) == .timedOut {
            // Still inside librdkafka: destroying the handle now could crash; leak it.
            logger.warning("kafka consumer close is stuck in librdkafka; abandoning the handle")
            return false
        }
        var clean = outcome.value.clean
        context.owner = nil

        let done = DispatchSemaphore(value: 0)
        let handle = UncheckedSendable(rk)
        let context = Unmanaged.passRetained(self.context)
        let retained = UncheckedSendable(context)
        Thread.detachNewThread {
            rd_kafka_destroy_flags(handle.value, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE)
            // Only now can no librdkafka thread reach the context any more.
            retained.value.release()
            done.signal()
        }
        let left = max(deadline.timeIntervalSinceNow, 0.5)
        if done.wait(timeout: .now() + left) == .timedOut {
            logger.warning("kafka consumer destroy did not finish within the close bound; leaking the handle")
            clean = false
        }
        return clean
    }

    private final class CloseOutcome { var clean = true }

    /// librdkafka's consumer close: revocations are delivered to (and answered from) a queue
    /// of its own until the consumer reports closed or the deadline passes.
    private func runCloseProtocol(deadline: Date, timeoutSeconds: Double) -> Bool {
        var clean = true
        let queue = rd_kafka_queue_new(rk)!
        if let error = rd_kafka_consumer_close_queue(rk, queue) {
            logger.warning("\(KafkaError(consuming: error, "consumer close"))")
            clean = false
        } else {
            while rd_kafka_consumer_closed(rk) == 0 {
                let left = deadline.timeIntervalSinceNow
                guard left > 0 else {
                    logger.warning("kafka consumer close did not finish within \(timeoutSeconds) s; abandoning it")
                    clean = false
                    break
                }
                guard let event = rd_kafka_queue_poll(queue, Int32(min(left, 0.1) * 1000) + 1) else { continue }
                if rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE {
                    handleRebalance(rd_kafka_event_error(event), rd_kafka_event_topic_partition_list(event))
                }
                rd_kafka_event_destroy(event)
            }
        }
        rd_kafka_queue_destroy(queue)
        return clean
    }

    // MARK: - internals (poll thread)

    fileprivate func report(_ event: KafkaConsumerEvent) { context.addPending(event) }

    private func track(_ batch: KafkaBatch) {
        if batches.contains(where: { $0.value === batch }) { return }
        batches.removeAll { $0.value == nil }
        batches.append(Weak(batch))
    }

    fileprivate func handleRebalance(_ err: rd_kafka_resp_err_t, _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        let cooperative = rd_kafka_rebalance_protocol(rk).map { String(cString: $0) } == "COOPERATIVE"
        let partitions = PartitionList.entries(list).map(\.tp)
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            let offsets = delegate?.assigned(partitions) ?? [:]
            if let list, let elems = list.pointee.elems {
                for i in 0..<Int(list.pointee.cnt) {
                    let tp = TopicPartition(String(cString: elems[i].topic), elems[i].partition)
                    elems[i].offset = offsets[tp] ?? KafkaOffset.invalid
                }
            }
            logger.info("kafka partitions assigned", metadata: ["partitions": "\(partitions.map(\.description))"])
            if cooperative {
                if let error = rd_kafka_incremental_assign(rk, list) {
                    report(.error(KafkaError(consuming: error, "incremental assign"), nil))
                }
            } else {
                let e = rd_kafka_assign(rk, list)
                if e != RD_KAFKA_RESP_ERR_NO_ERROR { report(.error(KafkaError(e, "assign"), nil)) }
            }
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            let lost = rd_kafka_assignment_lost(rk) != 0
            filling?.drop(Set(partitions))
            if lost {
                logger.warning("kafka partitions lost", metadata: ["partitions": "\(partitions.map(\.description))"])
                delegate?.lost(partitions)
            } else {
                logger.info("kafka partitions revoked", metadata: ["partitions": "\(partitions.map(\.description))"])
                delegate?.revoked(partitions)
            }
            if cooperative {
                if let error = rd_kafka_incremental_unassign(rk, list) {
                    report(.error(KafkaError(consuming: error, "incremental unassign"), nil))
                }
            } else {
                _ = rd_kafka_assign(rk, nil)
            }
        default:
            // A failed rebalance: librdkafka wants the assignment cleared. Whatever we held
            // may already be elsewhere, so it counts as lost.
            let held = (try? assignment()) ?? []
            filling?.drop(Set(held))
            report(.error(KafkaError(err, "rebalance"), nil))
            if !held.isEmpty { delegate?.lost(held) }
            _ = rd_kafka_assign(rk, nil)
        }
    }
}

struct Weak<T: AnyObject> {
    weak var value: T?
    init(_ value: T) { self.value = value }
}

/// What librdkafka's callbacks reach through the conf opaque. Callbacks that touch the
/// owner run only inside poll/close on the poll thread; the log callback (any thread)
/// touches only the Sendable logger.
final class ConsumerContext: LogSink, @unchecked Sendable {
    let logger: Logger
    weak var owner: KafkaConsumer?
    private var pending: [KafkaConsumerEvent] = []

    init(logger: Logger) { self.logger = logger }

    func addPending(_ e: KafkaConsumerEvent) { pending.append(e) }

    func takePending() -> [KafkaConsumerEvent] {
        guard !pending.isEmpty else { return [] }
        defer { pending.removeAll() }
        return pending
    }
}
