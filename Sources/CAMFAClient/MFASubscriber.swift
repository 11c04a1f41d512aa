import CAMFAKafka
import Dispatch
import Foundation
import Logging

/// The seed's `subscribe("authing.security.mfa?originalIdentity=…", handler)`: a consumer
/// group member on camfa's MFA topic that hands out the matching events as an
/// `AsyncSequence`, each once.
///
/// ```swift
/// let subscriber = MFASubscriber(bootstrap: "kafka:9092", group: "portal-sessions")
/// for await event in try subscriber.subscribe(filter: MFAEventFilter(parsing: ["appId=portal"])) {
///     switch event.action { case .mfa: hold(event) case .deny: end(event) case .cleared: release(event) }
/// }
/// ```
///
/// Delivery is at least once and resumes where the group left off: an event's offset is
/// committed once the loop asks for the next event, so an event being handled when the
/// process dies comes again after the restart. camfa itself publishes at least once (a
/// redelivered input record republishes with the same id); the stream drops those repeats
/// by id within the last `rememberedIds` events.
public struct MFASubscriber: Sendable {
    /// Where a group without a committed position starts.
    public enum Start: Sendable {
        /// The oldest event the topic still holds.
        case beginning
        /// Only events published from now on.
        case end
    }

    /// Kafka bootstrap servers.
    public let bootstrap: String
    /// The consumer group.
    public let group: String
    /// camfa's MFA topic (`topics.output`).
    public let topic: String
    private let properties: [(String, String)]

    /// - Parameters:
    ///   - bootstrap: Kafka bootstrap servers.
    ///   - group: the consumer group: instances of one service share it to split the
    ///     partitions, and its committed position is where a restart goes on.
    ///   - properties: librdkafka properties (security.protocol, sasl.*, ...); they win
    ///     over the subscriber's own.
    ///   - topic: camfa's MFA topic.
    public init(bootstrap: String, group: String, topic: String = "authing.security.mfa", properties: [(String, String)] = []) {
        self.bootstrap = bootstrap
        self.group = group
        self.topic = topic
        self.properties = properties
    }

    /// Joins the group and returns the stream of matching events. The stream ends when the
    /// iterating task is cancelled or `MFAEventStream.close()` is called, after committing
    /// what was handled.
    /// - Parameters:
    ///   - filter: which events to hand out; the others are skipped (and committed).
    ///   - start: where a group without a committed position starts.
    ///   - rememberedIds: how many of the latest ids are remembered to drop repeats.
    ///   - remembering: ids handled before (a caller that keeps its own record of them
    ///     across restarts): they are dropped like repeats.
    ///   - logger: where skipped records and consumer errors are reported.
    public func subscribe(filter: MFAEventFilter = MFAEventFilter(), from start: Start = .end, rememberedIds: Int = 100_000,
                          remembering: [String] = [], logger: Logger = Logger(label: "camfa.client.subscribe")) throws -> MFAEventStream {
        // Range, not cooperative-sticky: librdkafka 2.0.2 can abort when a
        // cooperative-sticky member closes before its first assignment, which a short-lived
        // subscriber does. A short session: a restarted subscriber takes its partitions
        // back within seconds even when the previous run could not leave the group.
        let own: [(String, String)] = [
            ("auto.offset.reset", start == .beginning ? "earliest" : "latest"), ("partition.assignment.strategy", "range"),
            ("session.timeout.ms", "10000"), ("heartbeat.interval.ms", "1000"), ("log_level", "3"),
        ]
        let names = Set(properties.map(\.0))
        let consumer: KafkaConsumer
        do {
            consumer = try KafkaConsumer(config: KafkaConfig(bootstrapServers: bootstrap, own.filter { !names.contains($0.0) } + properties),
                                         groupID: group, logger: logger)
            try consumer.subscribe([topic])
        } catch {
            throw SubscribeError(message: "cannot subscribe to \(topic) at \(bootstrap): \(error)")
        }
        var dedup = MFAEventDeduplicator(capacity: rememberedIds)
        for id in remembering.suffix(rememberedIds) { _ = dedup.isNew(id) }
        return MFAEventStream(core: SubscriptionCore(consumer: consumer, filter: filter, dedup: dedup, logger: logger))
    }
}

/// Why `MFASubscriber.subscribe` could not start.
public struct SubscribeError: Error, Sendable, CustomStringConvertible {
    /// What failed, with librdkafka's reason.
    public var message: String
    public var description: String { message }
}

/// The matching MFA events, in each partition's order (a user's events are in one
/// partition, so in order). Single pass: iterators made from one stream share its position.
public struct MFAEventStream: AsyncSequence, Sendable {
    public typealias Element = MFAEvent
    fileprivate let core: SubscriptionCore

    public func makeAsyncIterator() -> Iterator { Iterator(core: core) }

    /// Commits what was handled (every event returned so far) and leaves the group; the
    /// stream then ends. For a loop left with `break`, whose last event was handled.
    public func close() async { await core.close() }

    /// Hands out the stream's events one at a time.
    public struct Iterator: AsyncIteratorProtocol {
        fileprivate let core: SubscriptionCore
        /// The next matching event; nil once the task is cancelled or the stream closed.
        public mutating func next() async -> MFAEvent? { await core.next() }
    }
}

/// The stream's consumer and position. The iterator calls it one step at a time and every
/// consumer call runs on `queue`, one at a time: the consumer's one-thread rule, without
/// blocking a thread of the concurrency pool in librdkafka.
private final class SubscriptionCore: @unchecked Sendable {
    private let consumer: KafkaConsumer
    private let queue = DispatchQueue(label: "camfa.client.subscribe")
    private let batch = KafkaBatch(capacity: 500)
    private var filter: MFAEventFilter
    private var dedup: MFAEventDeduplicator
    private let logger: Logger
    /// Records of `batch` before this index are handled: the caller asked for the next
    /// event after the last one returned.
    private var cursor = 0
    private var closed = false

    init(consumer: KafkaConsumer, filter: MFAEventFilter, dedup: MFAEventDeduplicator, logger: Logger) {
        self.consumer = consumer
        self.filter = filter
        self.dedup = dedup
        self.logger = logger
    }

    func next() async -> MFAEvent? {
        while !closed {
            while cursor < batch.records.count {
                let r = batch.records[cursor]
                cursor += 1
                guard let value = r.value else { continue }
                guard let event = MFAEvent(json: Data(value)) else {
                    logger.warning("not an MFA event, skipped", metadata: ["position": "\(r.topic)/\(r.partition)/\(r.offset)"])
                    continue
                }
                if filter.matches(event), dedup.isNew(event.id) { return event }
            }
            if Task.isCancelled {
                await close()
                return nil
            }
            await onQueue { [self] in
                commitHandled()
                consumer.poll(into: batch, maxMessages: 500, timeoutMs: 200)
                cursor = 0
                for case .error(let error, let tp) in batch.events {
                    logger.warning("consumer error (librdkafka retries)", metadata: ["error": "\(error)", "partition": "\(tp.map { "\($0)" } ?? "-")"])
                }
            }
        }
        return nil
    }

    func close() async {
        guard !closed else { return }
        closed = true
        await onQueue { [self] in
            commitHandled()
            batch.release()
            _ = consumer.close(timeoutSeconds: 5)
        }
    }

    private func commitHandled() {
        var next: [TopicPartition: Int64] = [:]
        for r in batch.records.prefix(cursor) { next[r.topicPartition] = r.offset + 1 }
        guard !next.isEmpty else { return }
        do { try consumer.commit(next) } catch { logger.warning("offset commit failed; the events come again after a restart", metadata: ["error": "\(error)"]) }
    }

    private func onQueue(_ work: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            queue.async {
                work()
                done.resume()
            }
        }
    }
}
