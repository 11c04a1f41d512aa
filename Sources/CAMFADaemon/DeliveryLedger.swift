import CAMFAKafka
import Logging

/// Outputs produced and not yet acknowledged by the broker, for the pipeline and the result
/// forwarder alike. Confined to the thread that owns the producer.
///
/// Three rules keep outputs from being lost: a failed delivery is sent again rather than
/// dropped (librdkafka already retried for `message.timeout.ms`; progress stops until it
/// goes through); a success counts only with the offset the broker stored it at; and the
/// outputs of an ownership period that ended are forgotten, because the partition's next
/// owner produces them again from its checkpoint.
///
/// One exception: an error that sending again cannot clear (the message is too large or
/// invalid for the broker) would stall the partition for good, and an input could cause it
/// on purpose. Such an output is replaced by its dead letter (reason `undeliverable`,
/// the coordinates of the input it came from and the first 256 bytes of it); a dead letter that is itself
/// undeliverable is logged and counted (`undeliverable`), and the partition goes on.
final class DeliveryLedger {
    /// A produced message kept until the broker acknowledges it.
    struct Output {
        var topic: String
        var key: [UInt8]?
        var value: [UInt8]
        var headers: [(String, [UInt8]?)]
        /// The input record the output belongs to: its offset is committable once every
        /// output of it is acknowledged.
        var partition: Int32
        var offset: Int64
        var attempts = 1
        /// The partition to produce to; nil: the producer's partitioner on `key`.
        var destination: Int32? = nil
    }

    private(set) var inFlight: [UInt64: Output] = [:]
    private var nextToken: UInt64 = 1
    private var failedSends: [UInt64] = []
    /// In-flight outputs of partitions lost or revoked since they were produced.
    private var orphaned: Set<UInt64> = []
    private(set) var retries = 0
    private(set) var produceErrors = 0
    /// Dead letters dropped because even they could not be delivered.
    private(set) var undeliverable = 0
    /// Outputs the producer refused at once with a permanent error, handled in `serve`.
    private var refused: [(UInt64, KafkaError)] = []
    let producer: KafkaProducer
    let logger: Logger
    let deadLetterTopic: String

    init(producer: KafkaProducer, deadLetterTopic: String, logger: Logger) {
        self.producer = producer
        self.deadLetterTopic = deadLetterTopic
        self.logger = logger
    }

    /// Errors no retry clears: the message itself is what the broker refuses.
    static let permanent: Set<KafkaErrorCode> = [.messageSizeTooLarge, .invalidMessageSize, .invalidRecord]
    /// Of the undeliverable output, the dead letter keeps only a prefix: the input record
    /// it came from (at the coordinates) reproduces it whole.
    static let keptBytes = 256

    /// A delivery token the ledger will not use, for messages the caller tracks itself.
    func reserveToken() -> UInt64 {
        defer { nextToken += 1 }
        return nextToken
    }

    func produce(_ output: Output) {
        let token = reserveToken()
        inFlight[token] = output
        send(output, token: token)
    }

    var isEmpty: Bool { inFlight.isEmpty }

    func hasInFlight(of partitions: Set<Int32>) -> Bool { inFlight.values.contains { partitions.contains($0.partition) } }

    /// The partition's ownership period ended: acks of its outputs must not count for a
    /// later period (the same offset may be in flight again then), and failures need no retry.
    func orphan(partition: Int32) {
        for (token, o) in inFlight where o.partition == partition { orphaned.insert(token) }
    }

    /// Serves delivery reports: `acknowledged` for each output the broker stored, `other`
    /// for tokens the ledger does not hold (see `reserveToken`).
    func serve(_ reports: [DeliveryReport], other: (DeliveryReport) -> Void, acknowledged: (Output) -> Void) {
        for r in reports {
            guard var o = inFlight[r.token] else {
                other(r)
                continue
            }
            if orphaned.remove(r.token) != nil {
                inFlight.removeValue(forKey: r.token)
                continue
            }
            // A success without the offset the broker stored it at cannot be verified: the
            // mock cluster acknowledges a retried batch it takes for a duplicate this way
            // without ever having stored it (seen in the broker-fault test: offset -1001,
            // message absent from the topic). Publishing again is safe: outputs are
            // at-least-once and a duplicate carries the same id.
            if let e = r.error, Self.permanent.contains(e.code) {
                inFlight.removeValue(forKey: r.token)
                replace(o, error: e, acknowledged: acknowledged)
                continue
            }
            let failure = r.error.map { "failed: \($0)" } ?? (r.offset < 0 ? "acknowledged without an offset" : nil)
            if let failure {
                o.attempts += 1
                inFlight[r.token] = o
                retries += 1
                logger.warning("delivery to \(o.topic) \(failure) (attempt \(o.attempts)); publishing again")
                send(o, token: r.token)
                continue
            }
            inFlight.removeValue(forKey: r.token)
            acknowledged(o)
        }
        if !refused.isEmpty {
            let now = refused
            refused.removeAll()
            for (t, e) in now {
                guard let o = inFlight.removeValue(forKey: t) else { continue }
                if orphaned.remove(t) != nil { continue }
                replace(o, error: e, acknowledged: acknowledged)
            }
        }
        guard !failedSends.isEmpty else { return }
        let retry = failedSends
        failedSends.removeAll()
        for t in retry {
            if orphaned.remove(t) != nil {
                inFlight.removeValue(forKey: t)
            } else if let o = inFlight[t] {
                send(o, token: t)
            }
        }
    }

    /// `o` failed for good: its dead letter takes its place (same input coordinates, so the
    /// input offset still waits for it), or, if `o` was a dead letter, it is given up.
    private func replace(_ o: Output, error: KafkaError, acknowledged: (Output) -> Void) {
        guard o.topic != deadLetterTopic else {
            undeliverable += 1
            logger.error("a dead letter is undeliverable and dropped", metadata: [
                "error": "\(error.code.name)", "partition": "\(o.partition)", "offset": "\(o.offset)",
            ])
            acknowledged(o)
            return
        }
        logger.warning("output undeliverable; dead-lettered instead", metadata: [
            "topic": "\(o.topic)", "error": "\(error.code.name)", "bytes": "\(o.value.count)", "partition": "\(o.partition)", "offset": "\(o.offset)",
        ])
        var headers: [(String, [UInt8]?)] = [
            ("camfa.reason", Array("undeliverable: \(error.code.name): \(o.topic) refused a message of \(o.value.count) bytes".utf8)),
            ("camfa.output.topic", Array(o.topic.utf8)),
            ("camfa.source.partition", Array(String(o.partition).utf8)),
            ("camfa.source.offset", Array(String(o.offset).utf8)),
        ]
        var value = o.value
        if value.count > Self.keptBytes {
            headers.append(("camfa.original.size", Array(String(value.count).utf8)))
            headers.append(("camfa.truncated", Array("true".utf8)))
            value = Array(value.prefix(Self.keptBytes))
        }
        produce(Output(topic: deadLetterTopic, key: o.key.map { Array($0.prefix(Self.keptBytes)) }, value: value, headers: headers,
                       partition: o.partition, offset: o.offset))
    }

    private func send(_ o: Output, token: UInt64) {
        do {
            try producer.produce(topic: o.topic, partition: o.destination, key: o.key, value: o.value, headers: o.headers, token: token)
        } catch where Self.permanent.contains(error.code) {
            refused.append((token, error))
        } catch {
            // Not retried here in a loop: the next serve retries it, and the record's offset
            // is not committed meanwhile.
            logger.error("produce to \(o.topic) failed: \(error); will retry")
            produceErrors += 1
            failedSends.append(token)
        }
    }
}
