import CAMFAKafka
import Foundation
import Logging
import Metrics
import ServiceLifecycle

/// The owners topic (`topics.owners`) read and written on a thread of its own: the pipeline
/// announces each task it starts (`announce`), and every instance reads every announcement
/// from the beginning of the topic into an `OwnerTable`, which the HTTP layer asks where to
/// forward a request for a user this instance does not process.
///
/// It is advice, never authority: a forwarded request is checked again by the instance that
/// receives it (which answers not-owned when the table was stale), and is forwarded once
/// only, so a stale table costs a 503 and a retry, never a loop or a wrong answer.
public final class OwnerDirectory: @unchecked Sendable {
    public let topic: String
    /// This instance's `http.advertisedURL`; nil: it announces nothing (it still forwards).
    public let advertisedURL: String?
    private let config: KafkaConfig
    private let records: RecordAuthenticator
    private let logger: Logger
    private let lock = NSLock()
    private var table = OwnerTable()
    private var pending: [OwnerRecord] = []
    /// This instance's tasks, announced again every `reannounceInterval`.
    private var mine: [Int32: Int64] = [:]
    /// Seconds between re-announcements: how long a stale record can outlive its owner.
    public static let reannounceInterval: Double = 30
    private let stop = StopSignal()
    private let refused = Counter(label: "camfa_owner_records_refused_total")

    /// nil when `topics.owners` is not set.
    public convenience init?(configuration c: Configuration, secret: DaemonSecret, logger: Logger) {
        guard let topic = c.topics.owners else { return nil }
        let config = KafkaConfig(bootstrapServers: c.kafka.bootstrap, c.kafka.properties.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        self.init(topic: topic, advertisedURL: c.http.enabled ? c.http.advertisedURL : nil, config: config, records: secret.records, logger: logger)
    }

    public init(topic: String, advertisedURL: String?, config: KafkaConfig, records: RecordAuthenticator, logger: Logger) {
        self.topic = topic
        self.advertisedURL = advertisedURL
        self.config = config
        self.records = records
        self.logger = logger
    }

    /// Where partition `p` is processed, when another instance announced it.
    public func owner(of p: Int32) -> String? {
        let url = lock.withLock { table.url(of: p) }
        return url == advertisedURL ? nil : url
    }

    /// The pipeline started a task of partition `p` in ownership period `epoch`. Any thread.
    public func announce(partition p: Int32, epoch: Int64, at: Int64) {
        guard let advertisedURL else { return }
        let r = OwnerRecord(partition: p, url: advertisedURL, epoch: epoch, at: at)
        lock.withLock {
            mine[p] = epoch
            pending.append(r)
            // Our own view at once: a request must not be forwarded away from us meanwhile.
            table.apply(r)
        }
    }

    /// The pipeline no longer runs partition `p`'s task.
    public func withdraw(partition p: Int32) {
        lock.withLock { _ = mine.removeValue(forKey: p) }
    }

    public func requestStop() { stop.set() }

    /// The thread's body until stopped. A Kafka failure is logged and retried: without the
    /// directory requests answer not-owned, which is no reason to stop the daemon.
    public func run() {
        while !stop.isSet {
            do { try serve() } catch {
                logger.error("the owners topic failed; retrying in 5 s", metadata: ["topic": "\(topic)", "error": "\(error)"])
                for _ in 0..<50 where !stop.isSet { Thread.sleep(forTimeInterval: 0.1) }
            }
        }
    }

    /// Produces announcements and reads the topic until stopped or a Kafka call fails.
    private func serve() throws {
        let producer = try KafkaProducer(config: config, lingerMs: 1, logger: logger)
        let consumer = try KafkaConsumer(config: config, groupID: "camfa-owners", logger: logger)
        defer { _ = consumer.close(timeoutSeconds: 2) }
        // A missing topic is the operator's to create (README "Any instance answers"): say so
        // once, and forward nothing until it exists.
        var warned = false
        while !stop.isSet {
            do {
                let count = try producer.partitionCount(topic: topic, timeoutMs: 2_000)
                if count != 1 { logger.warning("topics.owners has \(count) partitions; camfa reads and writes partition 0 only", metadata: ["topic": "\(topic)"]) }
                break
            } catch {
                if !warned { logger.error("cannot read topics.owners; requests for users of other instances answer not-owned until it exists", metadata: ["topic": "\(topic)", "error": "\(error)"]) }
                warned = true
                for _ in 0..<50 where !stop.isSet { Thread.sleep(forTimeInterval: 0.1) }
            }
        }
        try consumer.assign([TopicPartition(topic, 0): KafkaOffset.beginning])
        let batch = KafkaBatch(capacity: 256)
        var unacknowledged = 0
        var announced = Date()
        while !stop.isSet {
            if Date().timeIntervalSince(announced) >= Self.reannounceInterval, let url = advertisedURL {
                announced = Date()
                let now = Int64(Date().timeIntervalSince1970 * 1000)
                lock.withLock { pending += mine.sorted { $0.key < $1.key }.map { OwnerRecord(partition: $0.key, url: url, epoch: $0.value, at: now) } }
            }
            for r in lock.withLock({ () -> [OwnerRecord] in defer { pending = [] }; return pending }) {
                let (key, value, headers) = r.signed(with: records)
                do {
                    try producer.produce(topic: topic, partition: 0, key: key, value: value, headers: headers, token: 0)
                    unacknowledged += 1
                } catch {
                    logger.warning("cannot announce partition ownership", metadata: ["topic": "\(topic)", "partition": "\(r.partition)", "error": "\(error)"])
                }
            }
            for report in producer.poll(timeoutMs: 0) {
                unacknowledged -= 1
                if let error = report.error {
                    logger.warning("partition ownership not announced", metadata: ["topic": "\(topic)", "error": "\(error)"])
                }
            }
            consumer.poll(into: batch, maxMessages: 256, timeoutMs: 100)
            for record in batch.records {
                let key = record.key.map { [UInt8]($0) }
                let value = record.value.map { [UInt8]($0) }
                switch OwnerRecord.read(key: key, value: value, headers: record.headers(), records: records) {
                case .success(let r):
                    lock.withLock { table.apply(r) }
                case .failure(let why):
                    refused.increment()
                    logger.warning("owner record ignored", metadata: ["topic": "\(topic)", "offset": "\(record.offset)", "reason": "\(why)"])
                }
            }
            for event in batch.events {
                if case .error(let e, _) = event { logger.warning("kafka: \(e)") }
            }
            batch.release()
        }
        if unacknowledged > 0 { _ = try? producer.flush(timeoutMs: 2_000) }
    }
}

/// Runs an `OwnerDirectory` on a dedicated thread for the daemon's lifetime.
public struct OwnerDirectoryService: Service {
    public let directory: OwnerDirectory
    public init(directory: OwnerDirectory) { self.directory = directory }

    public func run() async throws {
        let directory = self.directory
        try await DedicatedThread.run(name: "camfa-owners", onGracefulShutdown: { directory.requestStop() }) {
            directory.run()
        }
    }
}
