import CAMFACore
import CAMFAEnrich
import CAMFAKafka
import Foundation
import Logging

/// The event flow: Kafka in → decode → enrich → engine → MFA events and dead letters out.
///
/// One thread, the poll thread, owns the consumer, every partition's state and this
/// object's mutable fields; `run()` is that thread's body and the rebalance callbacks
/// arrive on it from inside `poll`. Messages are processed synchronously in batches: no
/// hop to another thread or task per message.
public final class Pipeline: KafkaRebalanceDelegate, @unchecked Sendable {
    public struct Options: Sendable {
        public var configuration: Configuration
        public var policySet: PolicySet
        public var enrichment: EnrichmentResources?
        /// How long shutdown may take before it gives up on pending deliveries.
        public var shutdownTimeout: Double = 10
        /// Offsets are committed at most this often (they are for lag monitoring and restart).
        public var commitInterval: Double = 1
        public var maxBatch = 1_000
        public init(configuration: Configuration, policySet: PolicySet, enrichment: EnrichmentResources?) {
            self.configuration = configuration
            self.policySet = policySet
            self.enrichment = enrichment
        }
    }

    /// Decisions that issued a challenge, for `camfa dev`'s live view and tests.
    public var onChallenge: (@Sendable (Decision, UEBAEvent) -> Void)?

    let options: Options
    let logger: Logger
    let engine: Engine
    let enricher: Enricher?
    let stop = StopSignal()
    let metrics = PipelineCounters()

    private var consumer: KafkaConsumer!
    private var producer: KafkaProducer!
    private var partitions: [Int32: PartitionRuntime] = [:]
    private var inFlight: [UInt64: Output] = [:]
    private var nextToken: UInt64 = 1
    private var lastCommit = Date.distantPast
    private var committed: [Int32: Int64] = [:]

    struct PartitionRuntime {
        var state: PartitionState
        var tracker = OffsetTracker()
    }

    /// A produced message kept until the broker acknowledges it, so a failed delivery can
    /// be retried instead of dropped.
    struct Output {
        var topic: String
        var key: [UInt8]?
        var value: [UInt8]
        var headers: [(String, [UInt8]?)]
        var partition: Int32
        var offset: Int64
        var attempts = 1
    }

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
        self.engine = Engine(policySet: options.policySet)
        self.enricher = options.enrichment.map { Enricher(resources: $0) }
    }

    /// Asks the poll loop to finish its batch, flush, commit and return.
    public func requestStop() { stop.set() }
    public var counters: PipelineCounters { metrics }

    var kafkaConfig: KafkaConfig {
        let c = options.configuration
        // First start of a group: read from the beginning, so events produced before the
        // daemon came up are judged rather than skipped. Operators may override it.
        var props = c.kafka.properties
        if props["auto.offset.reset"] == nil { props["auto.offset.reset"] = "earliest" }
        return KafkaConfig(bootstrapServers: c.kafka.bootstrap, props.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    }

    /// The poll thread's body. Returns after a requested stop, once outputs are flushed and
    /// offsets committed (or the shutdown timeout passed).
    public func run() throws {
        let c = options.configuration
        producer = try KafkaProducer(config: kafkaConfig, logger: logger)
        consumer = try KafkaConsumer(config: kafkaConfig, groupID: c.kafka.groupId, delegate: self, logger: logger)
        try consumer.subscribe([c.topics.input])
        logger.info("camfa pipeline started", metadata: [
            "input": "\(c.topics.input)", "output": "\(c.topics.output)", "group": "\(c.kafka.groupId)",
            "flows": "\(options.policySet.flows.count)", "policies": "\(options.policySet.policies.count)",
        ])
        let batch = KafkaBatch(capacity: options.maxBatch)
        while !stop.isSet {
            _ = consumer.poll(into: batch, maxMessages: options.maxBatch, timeoutMs: 100)
            for record in batch.records { handle(record) }
            for event in batch.events {
                if case .error(let e, _) = event { logger.warning("kafka: \(e)") }
            }
            batch.release()
            serve(producer.poll(timeoutMs: 0))
            if Date().timeIntervalSince(lastCommit) >= options.commitInterval { commit(async: true) }
        }
        shutdown(batch)
    }

    private func shutdown(_ batch: KafkaBatch) {
        let deadline = Date().addingTimeInterval(options.shutdownTimeout)
        batch.release()
        drain(until: deadline.addingTimeInterval(-2))
        commit(async: false)
        if !inFlight.isEmpty {
            logger.error("shutdown: \(inFlight.count) outputs not acknowledged in time; their events will be processed again after restart")
        }
        // Before close: its revoke callback forgets the partitions.
        let offsets = committed.keys.sorted().map { "\($0):\(committed[$0]!)" }.joined(separator: ",")
        let closed = consumer.close(timeoutSeconds: max(1, deadline.timeIntervalSinceNow))
        if !closed { logger.warning("consumer close did not finish in time") }
        _ = try? producer.flush(timeoutMs: 1000)
        logger.info("camfa pipeline stopped", metadata: [
            "consumed": "\(metrics.consumed)", "processed": "\(metrics.processed)", "deadLettered": "\(metrics.deadLettered)",
            "committed": "\(offsets)",
        ])
    }

    /// Serves delivery reports until nothing is in flight or the deadline passes.
    private func drain(until deadline: Date) {
        while !inFlight.isEmpty, Date() < deadline {
            serve(producer.poll(timeoutMs: 50))
        }
    }

    // MARK: - Per message

    private func handle(_ record: KafkaRecord) {
        guard partitions[record.partition] != nil else { return }
        metrics.consumed += 1
        let c = options.configuration
        guard let value = record.value, value.count > 0 else {
            deadLetter(record, reason: "empty: the message has no value")
            return
        }
        if value.count > c.engine.maxMessageBytes {
            deadLetter(record, reason: "too-large: \(value.count) bytes exceeds engine.maxMessageBytes \(c.engine.maxMessageBytes)")
            return
        }
        var event: UEBAEvent
        do {
            event = try UEBAEvent.decode(json: value, maxBytes: c.engine.maxMessageBytes)
        } catch {
            deadLetter(record, reason: "invalid: \(error.code.rawValue): \(error.message)")
            return
        }
        if let ts = record.timestamp, event.requestDate > ts + c.engine.maxFutureSkew {
            deadLetter(record, reason: "future: requestDate is \(event.requestDate - ts) ms ahead of the broker timestamp (engine.maxFutureSkew \(c.engine.maxFutureSkew) ms)")
            return
        }
        enricher?.enrich(&event)
        let coordinates = MFAEvent.Coordinates(topic: record.topic, partition: record.partition, offset: record.offset)
        let outcome = engine.process(event, coordinates: coordinates.key, state: &partitions[record.partition]!.state)
        switch outcome {
        case .rejected(let reason):
            deadLetter(record, reason: "\(reason.code.rawValue): \(reason.message)")
        case .decided(let decisions):
            var outputs = 0
            for d in decisions where d.issuesChallenge {
                let envelope = MFAEvent.envelope(decision: d, event: event, coordinates: coordinates, source: c.eventSource)
                produce(Output(topic: c.topics.output, key: Array(event.originalIdentity.utf8), value: JSONWriter.encode(envelope),
                               headers: [("ce_type", Array(MFAEvent.type.utf8))], partition: record.partition, offset: record.offset))
                outputs += 1
                metrics.challenges += 1
                onChallenge?(d, event)
            }
            metrics.processed += 1
            partitions[record.partition]!.tracker.processed(offset: record.offset, outputs: outputs)
        }
    }

    /// Bad input goes to the dead-letter topic with its reason and coordinates; it is never
    /// dropped silently and never stops the daemon. The log line carries no event content.
    private func deadLetter(_ record: KafkaRecord, reason: String) {
        let c = options.configuration
        metrics.deadLettered += 1
        logger.notice("dead letter", metadata: [
            "reason": "\(reason.prefix { $0 != ":" })", "partition": "\(record.partition)", "offset": "\(record.offset)",
        ])
        var headers: [(String, [UInt8]?)] = [
            ("camfa.reason", Array(reason.utf8)), ("camfa.source.topic", Array(record.topic.utf8)),
            ("camfa.source.partition", Array(String(record.partition).utf8)),
            ("camfa.source.offset", Array(String(record.offset).utf8)),
        ]
        var value = record.value.map { [UInt8]($0) } ?? []
        // A message too large for the engine is usually too large for the dead-letter topic
        // too; the source coordinates still point at the whole original.
        if value.count > Self.deadLetterMaxBytes {
            headers.append(("camfa.original.size", Array(String(value.count).utf8)))
            headers.append(("camfa.truncated", Array("true".utf8)))
            value = Array(value.prefix(Self.deadLetterKeptBytes))
        }
        produce(Output(topic: c.topics.deadLetter, key: record.key.map { [UInt8]($0) }, value: value, headers: headers,
                       partition: record.partition, offset: record.offset))
        partitions[record.partition]!.tracker.processed(offset: record.offset, outputs: 1)
    }

    static let deadLetterMaxBytes = 512 << 10
    static let deadLetterKeptBytes = 64 << 10

    private func produce(_ output: Output) {
        let token = nextToken
        nextToken += 1
        inFlight[token] = output
        send(output, token: token)
    }

    private func send(_ o: Output, token: UInt64) {
        do {
            try producer.produce(topic: o.topic, key: o.key, value: o.value, headers: o.headers, token: token)
        } catch {
            // Not retried here in a loop: the delivery serve loop retries on its next pass,
            // and the event's offset is not committed meanwhile.
            logger.error("produce to \(o.topic) failed: \(error); will retry")
            metrics.produceErrors += 1
            failedSends.append(token)
        }
    }

    private var failedSends: [UInt64] = []

    private func serve(_ reports: [DeliveryReport]) {
        for r in reports {
            guard var o = inFlight[r.token] else { continue }
            if let error = r.error {
                // librdkafka already retried for message.timeout.ms: try again rather than
                // drop; progress (the committed offset) stops until it goes through.
                o.attempts += 1
                inFlight[r.token] = o
                metrics.deliveryRetries += 1
                logger.warning("delivery to \(o.topic) failed (attempt \(o.attempts)): \(error); retrying")
                send(o, token: r.token)
                continue
            }
            inFlight.removeValue(forKey: r.token)
            partitions[o.partition]?.tracker.acknowledged(offset: o.offset)
        }
        if !failedSends.isEmpty {
            let retry = failedSends
            failedSends.removeAll()
            for t in retry { if let o = inFlight[t] { send(o, token: t) } }
        }
    }

    private func commit(async: Bool, only: Set<Int32>? = nil) {
        lastCommit = Date()
        var offsets: [TopicPartition: Int64] = [:]
        for (p, rt) in partitions where only == nil || only!.contains(p) {
            if let next = rt.tracker.committable, committed[p] != next {
                offsets[TopicPartition(options.configuration.topics.input, p)] = next
            }
        }
        guard !offsets.isEmpty else { return }
        do {
            try consumer.commit(offsets, async: async)
            for (tp, o) in offsets { committed[tp.partition] = o }
        } catch {
            logger.warning("offset commit failed: \(error)")
        }
    }

    // MARK: - Rebalance (on the poll thread, inside poll)

    public func assigned(_ list: [TopicPartition]) -> [TopicPartition: Int64] {
        for tp in list where tp.topic == options.configuration.topics.input {
            partitions[tp.partition] = PartitionRuntime(state: PartitionState(policySet: options.policySet))
            committed.removeValue(forKey: tp.partition)
        }
        logger.info("partitions assigned", metadata: ["partitions": "\(list.map(\.partition).sorted())"])
        return [:]
    }

    public func revoked(_ list: [TopicPartition]) {
        // Still ours: let their outputs land, then commit, so the next owner starts exactly
        // after what was published.
        let mine = Set(list.map(\.partition))
        let deadline = Date().addingTimeInterval(options.shutdownTimeout / 2)
        while inFlight.values.contains(where: { mine.contains($0.partition) }), Date() < deadline {
            serve(producer.poll(timeoutMs: 50))
        }
        commit(async: false, only: mine)
        for p in mine {
            partitions.removeValue(forKey: p)
            committed.removeValue(forKey: p)
        }
        logger.info("partitions revoked", metadata: ["partitions": "\(mine.sorted())"])
    }

    public func lost(_ list: [TopicPartition]) {
        for tp in list {
            partitions.removeValue(forKey: tp.partition)
            committed.removeValue(forKey: tp.partition)
        }
        logger.warning("partitions lost; their state is dropped unwritten", metadata: ["partitions": "\(list.map(\.partition).sorted())"])
    }
}

/// Counters read by other threads (health, metrics, the dev view): relaxed reads are fine.
public final class PipelineCounters: @unchecked Sendable {
    public var consumed = 0
    public var processed = 0
    public var deadLettered = 0
    public var challenges = 0
    public var deliveryRetries = 0
    public var produceErrors = 0
}

/// A flag set from a signal handler or another thread, read by the poll loop.
public final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    public init() {}
    public func set() { lock.withLock { value = true } }
    public var isSet: Bool { lock.withLock { value } }
}
