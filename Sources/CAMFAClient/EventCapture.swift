import CAMFAKafka
import Foundation
import Logging

/// The seed's `capture(ueba)`: a UEBA event to camfa's input topic, keyed by its
/// `originalIdentity` (camfa's state is per user and partition; the key keeps a user's
/// events in one partition, in order). Idempotent producer, acks from all replicas; a
/// thread of its own serves delivery reports, so `capture` never blocks on the network.
public final class EventCapture: @unchecked Sendable {
    /// Why an event was not queued.
    public struct CaptureError: Error, Sendable, CustomStringConvertible {
        /// What was wrong with the event or the producer.
        public var message: String
        public var description: String { message }
    }

    /// camfa's input topic (`topics.input`).
    public let topic: String
    private let producer: KafkaProducer
    private let lock = NSLock()
    private var failed = 0
    private var lastFailure: String?
    private var running = true
    private var poller: Thread?

    /// - Parameters:
    ///   - bootstrap: Kafka bootstrap servers.
    ///   - topic: camfa's input topic.
    ///   - properties: librdkafka properties (security.protocol, sasl.*, ...).
    ///   - logger: where librdkafka's own log goes.
    public init(bootstrap: String, topic: String = "camfa.ueba", properties: [(String, String)] = [],
                logger: Logger = Logger(label: "camfa.client.capture")) throws {
        self.topic = topic
        do { producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: bootstrap, properties), logger: logger) } catch {
            throw CaptureError(message: "cannot create the producer: \(error)")
        }
        let thread = Thread { [weak self] in
            while let self, self.isRunning {
                for report in self.producer.poll(timeoutMs: 100) where report.error != nil {
                    self.lock.withLock {
                        self.failed += 1
                        self.lastFailure = "\(report.error!)"
                    }
                }
            }
        }
        thread.name = "camfa-capture"
        thread.start()
        poller = thread
    }

    private var isRunning: Bool { lock.withLock { running } }

    /// Events the broker refused after librdkafka's retries, and the last reason.
    public var failures: (count: Int, last: String?) { lock.withLock { (failed, lastFailure) } }

    /// Queues one UEBA event (a JSON object with `originalIdentity`); throws when it is not
    /// one or the producer refuses it (its queue full, a fatal error).
    public func capture(json: Data) throws {
        guard let object = (try? JSONSerialization.jsonObject(with: json)) as? [String: Any],
              let user = object["originalIdentity"] as? String, !user.isEmpty else {
            throw CaptureError(message: "a UEBA event is a JSON object with a non-empty originalIdentity")
        }
        do { try producer.produce(topic: topic, key: Array(user.utf8), value: Array(json), token: 0) } catch {
            throw CaptureError(message: "\(error)")
        }
    }

    /// Waits until every queued event is acknowledged (or `timeoutMs` passed); false on timeout.
    public func flush(timeoutMs: Int32 = 10_000) -> Bool {
        (try? producer.flush(timeoutMs: timeoutMs)) ?? false
    }

    deinit {
        lock.withLock { running = false }
    }
}
