import CRdKafka
import Foundation
import Logging

/// The outcome of one produced message, matched to it by the caller's token.
public struct DeliveryReport: Sendable, Equatable {
    public var token: UInt64
    public var topic: String
    public var partition: Int32
    /// The offset the broker assigned; meaningful only when `error` is nil.
    public var offset: Int64
    /// nil: the broker acknowledged the message (acks=all). Otherwise librdkafka gave up on
    /// it after its own retries; the message was not written.
    public var error: KafkaError?
}

/// Idempotent producer (`enable.idempotence=true`, `acks=all`): librdkafka retries
/// retriable failures itself without reordering or duplicating, so every message ends in
/// exactly one delivery report, success or failure.
///
/// Threading: all methods are safe to call from any thread. Delivery reports are
/// collected by librdkafka's callback on whichever thread runs `poll`, `flush` or a
/// `produce` that waits on a full queue, and handed out by `poll` /
/// `drainDeliveryReports`; nothing is called back into the caller.
public final class KafkaProducer: @unchecked Sendable {
    private let rk: OpaquePointer
    private let context: ProducerContext
    public var logger: Logger { context.logger }
    var handle: OpaquePointer { rk }

    /// - Parameter lingerMs: how long librdkafka waits to fill a batch; small keeps the
    ///   decision-to-publish latency low.
    public init(config: KafkaConfig, lingerMs: Int = 5, logger: Logger = Logger(label: "camfa.kafka.producer")) throws(KafkaError) {
        let conf = try config.forProducer.makeConf(
            defaults: [("linger.ms", String(lingerMs))],
            enforced: [("enable.idempotence", "true"), ("acks", "all")])
        context = ProducerContext(logger: logger)
        installLogCallback(conf)
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(context).toOpaque())
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
            guard let message, let opaque else { return }
            let context = Unmanaged<ProducerContext>.fromOpaque(opaque).takeUnretainedValue()
            let m = message.pointee
            let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
            let error: KafkaError? =
                m.err == RD_KAFKA_RESP_ERR_NO_ERROR
                ? nil : KafkaError(m.err, "delivery to \(topic)[\(m.partition)]")
            context.append(DeliveryReport(
                token: UInt64(UInt(bitPattern: m._private)), topic: topic,
                partition: m.partition, offset: m.offset, error: error))
        }
        rd_kafka_conf_set_error_cb(conf) { rk, err, reason, opaque in
            guard let rk, let opaque else { return }
            let context = Unmanaged<ProducerContext>.fromOpaque(opaque).takeUnretainedValue()
            let text = reason.map { String(cString: $0) } ?? ""
            if err == RD_KAFKA_RESP_ERR__FATAL.rawValue {
                var buf = [CChar](repeating: 0, count: 512)
                let underlying = rd_kafka_fatal_error(rk, &buf, buf.count)
                let detail = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                let fatal = KafkaError(
                    code: KafkaErrorCode(underlying),
                    message: "fatal producer error, the producer must be recreated: \(detail)")
                context.setFatal(fatal)
                context.logger.error("\(fatal)")
            } else {
                // Transient by definition (librdkafka keeps retrying); worth a line, not an action.
                context.logger.warning("kafka producer: \(KafkaErrorCode(rawValue: err).name): \(text)")
            }
        }
        rk = try makeHandle(RD_KAFKA_PRODUCER, conf, "producer")
    }

    deinit {
        // Outstanding messages are purged (their reports are lost with this object), so
        // owners flush first; destroy of a producer does not wait on a group and is bounded
        // by message.timeout.ms at worst.
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT)
        rd_kafka_destroy(rk)
    }

    /// Set once librdkafka raised a fatal error (e.g. an idempotence sequence gap); every
    /// later produce or flush fails with it.
    public var fatalError: KafkaError? { context.fatal }

    /// Enqueues one message. The bytes are copied. A full local queue is not an error:
    /// the call serves delivery reports and retries until there is room, so a message is
    /// never dropped here; only a fatal error or an invalid request is thrown.
    /// - Parameter partition: nil lets librdkafka's default partitioner choose
    ///   (`consistent_random`: CRC32 of the key, as kcat does; not the Java client's murmur2).
    public func produce(
        topic: String, partition: Int32? = nil,
        key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer?,
        headers: [(String, [UInt8]?)] = [], token: UInt64
    ) throws(KafkaError) {
        if let fatal = context.fatal { throw fatal }
        var hdrs: OpaquePointer? = nil
        if !headers.isEmpty {
            hdrs = rd_kafka_headers_new(headers.count)
            for (name, value) in headers {
                if let value {
                    value.withUnsafeBytes { _ = rd_kafka_header_add(hdrs, name, -1, $0.baseAddress, $0.count) }
                } else {
                    _ = rd_kafka_header_add(hdrs, name, -1, nil, 0)
                }
            }
        }
        while true {
            let error: OpaquePointer? = topic.withCString { topicName in
                var vus = [rd_kafka_vu_t](repeating: rd_kafka_vu_t(), count: 6)
                vus[0].vtype = RD_KAFKA_VTYPE_TOPIC
                vus[0].u.cstr = topicName
                vus[1].vtype = RD_KAFKA_VTYPE_PARTITION
                vus[1].u.i32 = partition ?? RD_KAFKA_PARTITION_UA
                vus[2].vtype = RD_KAFKA_VTYPE_KEY
                vus[2].u.mem.ptr = key.flatMap { UnsafeMutableRawPointer(mutating: $0.baseAddress) }
                vus[2].u.mem.size = key?.count ?? 0
                vus[3].vtype = RD_KAFKA_VTYPE_VALUE
                vus[3].u.mem.ptr = value.flatMap { UnsafeMutableRawPointer(mutating: $0.baseAddress) }
                vus[3].u.mem.size = value?.count ?? 0
                vus[4].vtype = RD_KAFKA_VTYPE_OPAQUE
                vus[4].u.ptr = UnsafeMutableRawPointer(bitPattern: UInt(token))
                vus[5].vtype = RD_KAFKA_VTYPE_MSGFLAGS
                vus[5].u.i = RD_KAFKA_MSG_F_COPY
                if let hdrs {
                    var h = rd_kafka_vu_t()
                    h.vtype = RD_KAFKA_VTYPE_HEADERS
                    h.u.headers = hdrs
                    vus.append(h)
                }
                return rd_kafka_produceva(rk, vus, vus.count)
            }
            guard let error else { return }  // librdkafka now owns hdrs
            let code = KafkaErrorCode(rd_kafka_error_code(error))
            if code == .queueFull {
                rd_kafka_error_destroy(error)
                rd_kafka_poll(rk, 100)
                if let fatal = context.fatal {
                    if let hdrs { rd_kafka_headers_destroy(hdrs) }
                    throw fatal
                }
                continue
            }
            if let hdrs { rd_kafka_headers_destroy(hdrs) }
            if code == .fatal, let fatal = context.fatal {
                rd_kafka_error_destroy(error)
                throw fatal
            }
            throw KafkaError(consuming: error, "produce to \(topic)\(partition.map { "[\($0)]" } ?? "")")
        }
    }

    public func produce(
        topic: String, partition: Int32? = nil, key: [UInt8]?, value: [UInt8]?,
        headers: [(String, [UInt8]?)] = [], token: UInt64
    ) throws(KafkaError) {
        let result: Result<Void, KafkaError> = withOptionalBytes(key) { k in
            withOptionalBytes(value) { v in
                Result { () throws(KafkaError) in
                    try produce(topic: topic, partition: partition, key: k, value: v, headers: headers, token: token)
                }
            }
        }
        try result.get()
    }

    /// Serves delivery reports for up to `timeoutMs` and returns every report collected
    /// since the last call (including those collected by `produce` and `flush`).
    public func poll(timeoutMs: Int32 = 0) -> [DeliveryReport] {
        rd_kafka_poll(rk, timeoutMs)
        return context.drain()
    }

    public func drainDeliveryReports() -> [DeliveryReport] { context.drain() }

    /// Waits until every enqueued message has its delivery report (success or failure).
    /// - Returns: false if messages were still outstanding at the timeout.
    public func flush(timeoutMs: Int32) throws(KafkaError) -> Bool {
        let err = rd_kafka_flush(rk, timeoutMs)
        if let fatal = context.fatal { throw fatal }
        return err == RD_KAFKA_RESP_ERR_NO_ERROR
    }

    /// Messages enqueued or in flight without a delivery report yet.
    public var outstanding: Int { Int(rd_kafka_outq_len(rk)) }

    /// Raises a fatal error inside librdkafka as an idempotence failure would.
    func injectFatalErrorForTesting(_ code: KafkaErrorCode) {
        _ = rd_kafka_test_fatal_error(rk, code.c, "injected by test")
    }
}

func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
    guard let bytes else { return body(nil) }
    return bytes.withUnsafeBytes { body($0) }
}

/// State shared with librdkafka's callbacks; they may run on any thread that serves the
/// producer, so it is lock-protected.
final class ProducerContext: LogSink, @unchecked Sendable {
    let logger: Logger
    private let lock = NSLock()
    private var reports: [DeliveryReport] = []
    private var fatalError: KafkaError?

    init(logger: Logger) { self.logger = logger }

    func append(_ report: DeliveryReport) {
        lock.lock()
        reports.append(report)
        lock.unlock()
    }

    func drain() -> [DeliveryReport] {
        lock.lock()
        defer { lock.unlock() }
        let out = reports
        reports.removeAll(keepingCapacity: true)
        return out
    }

    func setFatal(_ error: KafkaError) {
        lock.lock()
        if fatalError == nil { fatalError = error }
        lock.unlock()
    }

    var fatal: KafkaError? {
        lock.lock()
        defer { lock.unlock() }
        return fatalError
    }
}
