import CAMFACore
import CAMFAKafka
import Foundation
import Logging
import ServiceLifecycle

/// Moves MFA results from `topics.results` (`authing.security.mfa.result`) into the input
/// topic, so the pipeline applies them in order with the user's events, under the same
/// checkpoints (one source of truth). It only validates: an invalid result goes to the
/// dead-letter topic with its reason; a valid one is written normalised (MFAResultJSON.swift)
/// keyed by user with `camfa.kind: mfa-result` and `camfa.origin.*` (its coordinates here).
/// Whether the challenge exists is decided later by the pipeline, which owns the state.
///
/// Own consumer group `<groupId>.results` and own thread: the pipeline's poll thread keeps
/// its one consumer. Offsets are committed only once the forwarded message (or the dead
/// letter) is acknowledged, so a crash forwards again rather than loses (at least once;
/// a repeated verified result is accepted without effect).
public final class ResultForwarder: KafkaRebalanceDelegate, @unchecked Sendable {
    let configuration: Configuration
    let logger: Logger
    let records: RecordAuthenticator
    let stop = StopSignal()
    /// Results forwarded and dead-lettered, for logs and tests (relaxed reads).
    public private(set) var forwarded = 0
    public private(set) var deadLettered = 0

    private var consumer: KafkaConsumer!
    private var producer: KafkaProducer!
    private var trackers: [Int32: OffsetTracker] = [:]
    private var ledger: DeliveryLedger!
    private var committed: [Int32: Int64] = [:]
    private var lastCommit = Date.distantPast

    typealias Output = DeliveryLedger.Output

    public init(configuration: Configuration, secret: DaemonSecret, logger: Logger) {
        self.configuration = configuration
        self.records = secret.records
        self.logger = logger
    }

    public func requestStop() { stop.set() }

    /// The forwarder thread's body; returns after a requested stop, once forwarded messages
    /// are acknowledged (or 5 s passed) and offsets committed.
    public func run() throws {
        let c = configuration
        var props = c.kafka.properties
        // As the pipeline: a new group reads from the beginning rather than skip results.
        if props["auto.offset.reset"] == nil { props["auto.offset.reset"] = "earliest" }
        // Stateless, so eager rebalancing costs nothing here; and librdkafka 2.0.2's sticky
        // assignor aborts at destroy (`rd_kafka_sticky_assignor_state_destroy: Assertion
        // 'assignor_state' failed`, seen in the rebalance test) for a group whose topic
        // has no partitions yet, which a results topic nobody produced to often is.
        if props["partition.assignment.strategy"] == nil { props["partition.assignment.strategy"] = "range" }
        let config = KafkaConfig(bootstrapServers: c.kafka.bootstrap, props.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        producer = try KafkaProducer(config: config, logger: logger)
        ledger = DeliveryLedger(producer: producer, deadLetterTopic: c.topics.deadLetter, logger: logger)
        consumer = try KafkaConsumer(config: config, groupID: c.kafka.groupId + ".results", delegate: self, logger: logger)
        try consumer.subscribe([c.topics.results])
        logger.info("camfa result forwarder started", metadata: ["results": "\(c.topics.results)", "input": "\(c.topics.input)"])
        let batch = KafkaBatch(capacity: 500)
        while !stop.isSet {
            consumer.poll(into: batch, maxMessages: 500, timeoutMs: 100)
            for record in batch.records { handle(record) }
            for event in batch.events {
                if case .error(let e, _) = event { logger.warning("kafka: \(e)") }
            }
            batch.release()
            serve(producer.poll(timeoutMs: 0))
            if Date().timeIntervalSince(lastCommit) >= 1 { commit(async: true) }
        }
        batch.release()
        let deadline = Date().addingTimeInterval(5)
        while !ledger.isEmpty, Date() < deadline { serve(producer.poll(timeoutMs: 50)) }
        commit(async: false)
        consumer.close(timeoutSeconds: 5)
        _ = try? producer.flush(timeoutMs: 1000)
        logger.info("camfa result forwarder stopped", metadata: ["forwarded": "\(forwarded)", "deadLettered": "\(deadLettered)"])
    }

    private func handle(_ record: KafkaRecord) {
        guard trackers[record.partition] != nil else { return }
        let c = configuration
        guard let value = record.value, value.count > 0 else {
            deadLetter(record, reason: "empty: the message has no value")
            return
        }
        let result: MFAResult
        do {
            // camfa's clock, not the subscriber's `time` nor the record's CreateTime (both
            // chosen by whoever produced it), dates the result; the forwarded record keeps
            // that time, so a replay of the input topic sees the same one.
            result = try MFAResult.decode(json: [UInt8](value), receivedAt: Int64(Date().timeIntervalSince1970 * 1000))
            try result.check(c.engine.limits)
        } catch {
            deadLetter(record, reason: "invalid: \(error.field.map { "\($0): " } ?? "")\(error.message)")
            return
        }
        let headers: [(String, [UInt8]?)] = [
            (InputHeaders.kind, Array(InputHeaders.mfaResultKind.utf8)),
            (InputHeaders.originPrefix + "topic", Array(record.topic.utf8)),
            (InputHeaders.originPrefix + "partition", Array(String(record.partition).utf8)),
            (InputHeaders.originPrefix + "offset", Array(String(record.offset).utf8)),
        ]
        forwarded += 1
        let key = Array(result.user.utf8), json = result.json
        produce(Output(topic: c.topics.input, key: key, value: json, headers: records.sign(key: key, value: json, headers: headers),
                       partition: record.partition, offset: record.offset))
    }

    /// Same topic and headers as the pipeline's dead letters (Pipeline.deadLetter).
    private func deadLetter(_ record: KafkaRecord, reason: String) {
        deadLettered += 1
        logger.notice("dead letter (MFA result)",
                      metadata: DeadLetterLog.metadata(record, reason: reason, personalData: configuration.logging.personalData))
        produce(Pipeline.deadLetter(record, reason: reason, topic: configuration.topics.deadLetter))
    }

    private func produce(_ o: Output) {
        trackers[o.partition]?.processed(offset: o.offset, outputs: 1)
        ledger.produce(o)
    }

    private func serve(_ reports: [DeliveryReport]) {
        ledger.serve(reports, other: { _ in }, acknowledged: { o in trackers[o.partition]?.acknowledged(offset: o.offset) })
    }

    private func commit(async: Bool, only: Set<Int32>? = nil) {
        lastCommit = Date()
        var offsets: [TopicPartition: Int64] = [:]
        for (p, t) in trackers where only?.contains(p) ?? true {
            if let next = t.committable, committed[p] != next { offsets[TopicPartition(configuration.topics.results, p)] = next }
        }
        guard !offsets.isEmpty else { return }
        do {
            try consumer.commit(offsets, async: async)
            for (tp, o) in offsets { committed[tp.partition] = o }
        } catch {
            logger.warning("result offset commit failed: \(error)")
        }
    }

    // MARK: - Rebalance (forwarder thread, inside poll)

    public func assigned(_ list: [TopicPartition]) -> [TopicPartition: Int64] {
        for tp in list where tp.topic == configuration.topics.results {
            trackers[tp.partition] = OffsetTracker()
            committed.removeValue(forKey: tp.partition)
        }
        return [:]  // the group's committed offsets
    }

    public func revoked(_ list: [TopicPartition]) {
        let mine = Set(list.map(\.partition))
        let deadline = Date().addingTimeInterval(5)
        while ledger.hasInFlight(of: mine), Date() < deadline {
            serve(producer.poll(timeoutMs: 50))
        }
        commit(async: false, only: mine)
        forget(mine)
    }

    public func lost(_ list: [TopicPartition]) { forget(Set(list.map(\.partition))) }

    private func forget(_ partitions: Set<Int32>) {
        for p in partitions {
            trackers.removeValue(forKey: p)
            committed.removeValue(forKey: p)
        }
        // Their unacknowledged outputs no longer gate a commit here; they may still land.
        for p in partitions { ledger.orphan(partition: p) }
    }
}

/// Runs a `ResultForwarder` on its own thread as a swift-service-lifecycle `Service`.
public struct ResultForwarderService: Service {
    public let forwarder: ResultForwarder

    public init(forwarder: ResultForwarder) { self.forwarder = forwarder }

    public func run() async throws {
        let forwarder = self.forwarder
        try await DedicatedThread.run(name: "camfa-results", onGracefulShutdown: { forwarder.requestStop() }) {
            try forwarder.run()
        }
    }
}
