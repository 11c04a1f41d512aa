import CAMFACore
import CAMFAKafka
import CAMFASimulator
import Foundation
import Logging

/// Simulated UEBA events produced to the broker for `camfa-bench e2e`, either as fast as
/// possible (a backlog) or paced to a fixed offered load.
enum BenchProducer {
    struct Result {
        var produced = 0
        var bytes = 0
        var seconds = 0.0
        var deliveryErrors = 0
        /// Wall-clock produce time (µs) of each message by its (partition, offset), when asked.
        var produceMicros: [Int64: Int64] = [:]
        var distinctUsers = 0
        var achievedRate: Double { seconds > 0 ? Double(produced) / seconds : 0 }
    }

    static func key(_ partition: Int32, _ offset: Int64) -> Int64 { Int64(partition) << 40 | offset }

    /// - Parameters:
    ///   - rate: events per wall-clock second; `.infinity` for a backlog.
    ///   - count, duration: whichever comes first ends production.
    ///   - record: keep every message's produce time, for latency.
    ///   - countUsers: count the distinct users produced (for bytes per tracked user).
    ///   - hold: asked with the number produced so far; while it answers true, production
    ///     waits (flow control, so a slower consumer never falls behind the broker's retention).
    static func run(bootstrap: String, topic: String, simulator sim: inout Simulator, rate: Double, count: Int = .max,
                    duration: Double = .infinity, record: Bool = false, countUsers: Bool = false, lingerMs: Int = 1,
                    hold: (Int) -> Bool = { _ in false }) throws -> Result {
        let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: bootstrap), lingerMs: lingerMs,
                                         logger: Logger(label: "camfa.bench.producer"))
        var r = Result()
        // Index = token − 1: the produce time of each message, matched to its offset by the
        // delivery report.
        var stamps: [Int64] = []
        var users = Set<String>()
        func serve(_ reports: [DeliveryReport]) {
            for d in reports {
                if d.error != nil { r.deliveryErrors += 1; continue }
                if record { r.produceMicros[key(d.partition, d.offset)] = stamps[Int(d.token) - 1] }
            }
        }
        let start = benchNow()
        while r.produced < count {
            let elapsed = benchNow() - start
            if elapsed >= duration { break }
            // Paced: send what is due, in bursts of at most 1000, then sleep a little.
            let due = rate.isFinite ? min(count, Int(elapsed * rate) + 1) : count
            if r.produced >= due || hold(r.produced) {
                usleep(r.produced >= due ? 200 : 10_000)
                serve(producer.poll(timeoutMs: 0))
                continue
            }
            for _ in 0..<min(1000, due - r.produced) {
                let e = sim.next().event
                let value = e.jsonBytes()
                if countUsers { users.insert(e.originalIdentity) }
                if record { stamps.append(benchWallMicros()) }
                r.produced += 1
                r.bytes += value.count
                try producer.produce(topic: topic, key: Array(e.originalIdentity.utf8), value: value, token: UInt64(r.produced))
            }
            serve(producer.poll(timeoutMs: 0))
        }
        r.seconds = benchNow() - start
        _ = try producer.flush(timeoutMs: 30_000)
        serve(producer.poll(timeoutMs: 0))
        r.distinctUsers = users.count
        return r
    }
}

/// Reads the MFA output topic from its current end while the offered load runs, and
/// notes for each MFA event when it was consumed, its Kafka timestamp (set by camfa's
/// producer when it published the event) and the input message that triggered it.
final class MFAObserver: @unchecked Sendable {
    struct Sample {
        var triggerKey: Int64
        /// The MFA message's Kafka timestamp (CreateTime: when camfa produced it), ms.
        var publishedMs: Int64
        /// When this consumer received it, µs.
        var consumedMicros: Int64
    }

    private let lock = NSLock()
    private var samples: [Sample] = []
    private let stop = StopFlag()
    private let done = DispatchSemaphore(value: 0)
    private var failure: String?
    private var ready = false

    /// What gives a sample: an MFA event (its trigger's coordinates name the input event),
    /// or every record, keyed by its own coordinates (the latency floor: input events read
    /// straight back).
    enum Sampling { case mfaEvents, everyRecord }

    init(bootstrap: String, topic: String, partitions: Int32, group: String, sampling: Sampling = .mfaEvents) {
        Thread.detachNewThread { [self] in
            do { try loop(bootstrap: bootstrap, topic: topic, partitions: partitions, group: group, sampling: sampling) } catch {
                lock.withLock { failure = "\(error)"; ready = true }
            }
            done.signal()
        }
    }

    /// Waits until the consumer is positioned at the end of the topic.
    func waitReady(timeout: Double) -> Bool {
        let deadline = benchNow() + timeout
        while benchNow() < deadline {
            if lock.withLock({ ready }) { return lock.withLock { failure == nil } }
            usleep(20_000)
        }
        return false
    }

    func finish() -> (samples: [Sample], error: String?) {
        stop.set()
        done.wait()
        return lock.withLock { (samples, failure) }
    }

    private func loop(bootstrap: String, topic: String, partitions: Int32, group: String, sampling: Sampling) throws {
        // Fetch responses as soon as there is anything, so the subscriber adds little.
        let consumer = try KafkaConsumer(
            config: KafkaConfig(bootstrapServers: bootstrap, [("fetch.wait.max.ms", "5"), ("fetch.error.backoff.ms", "10")]),
            groupID: group, logger: Logger(label: "camfa.bench.mfa"))
        defer { _ = consumer.close(timeoutSeconds: 2) }
        var start: [TopicPartition: Int64] = [:]
        for p in 0..<partitions {
            let tp = TopicPartition(topic, p)
            start[tp] = try consumer.watermarks(tp, timeoutMs: 5000).high
        }
        try consumer.assign(start)
        lock.withLock { ready = true }
        let batch = KafkaBatch()
        while !stop.isSet {
            consumer.poll(into: batch, maxMessages: 1000, timeoutMs: 50)
            let now = benchWallMicros()
            var got: [Sample] = []
            for r in batch.records {
                if sampling == .everyRecord {
                    if let ts = r.timestamp {
                        got.append(Sample(triggerKey: BenchProducer.key(r.partition, r.offset), publishedMs: ts, consumedMicros: now))
                    }
                    continue
                }
                guard let v = r.value, let ts = r.timestamp,
                      case .map(let envelope) = (try? JSONParser.parse(v)) ?? .null,
                      case .map(let data)? = envelope[string: "data"], case .map(let trigger)? = data[string: "trigger"],
                      case .int(let partition)? = trigger[string: "partition"], case .int(let offset)? = trigger[string: "offset"]
                else { continue }
                got.append(Sample(triggerKey: BenchProducer.key(Int32(partition), offset), publishedMs: ts, consumedMicros: now))
            }
            batch.release()
            if !got.isEmpty { lock.withLock { samples += got } }
        }
    }
}

final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
