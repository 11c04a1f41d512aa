import CRdKafka
import Logging

/// librdkafka properties, passed through verbatim and in order, so anything librdkafka
/// understands (`security.protocol`, `ssl.*`, `sasl.*`, timeouts) works without this
/// wrapper knowing about it. Later entries override earlier ones, as in librdkafka.
public struct KafkaConfig: Sendable {
    public var properties: [(String, String)]

    public init(_ properties: [(String, String)] = []) {
        self.properties = properties
    }

    public init(bootstrapServers: String, _ properties: [(String, String)] = []) {
        self.properties = [("bootstrap.servers", bootstrapServers)] + properties
    }

    /// The last value set for `key`.
    public subscript(key: String) -> String? {
        get { properties.last(where: { $0.0 == key })?.1 }
        set {
            properties.removeAll { $0.0 == key }
            if let newValue { properties.append((key, newValue)) }
        }
    }

    /// The same configuration without the properties librdkafka applies to consumers only.
    /// The daemon's one `kafka.properties` map serves both clients; handing a producer
    /// `session.timeout.ms` or `auto.offset.reset` only earns a warning per property and
    /// client at every start (librdkafka's CONFWARN), which would bury real ones.
    public var forProducer: KafkaConfig {
        KafkaConfig(properties.filter { (key, _) in
            !(Self.consumerOnly.contains(key) || Self.consumerOnlyPrefixes.contains { key.hasPrefix($0) })
        })
    }

    /// librdkafka 2.0's CONFIGURATION.md, properties marked "C" (consumer) only.
    static let consumerOnly: Set<String> = [
        "group.id", "group.instance.id", "partition.assignment.strategy", "session.timeout.ms",
        "heartbeat.interval.ms", "group.protocol.type", "coordinator.query.interval.ms",
        "max.poll.interval.ms", "enable.auto.commit", "auto.commit.interval.ms", "enable.auto.offset.store",
        "queued.min.messages", "queued.max.messages.kbytes", "fetch.wait.max.ms", "fetch.message.max.bytes",
        "max.partition.fetch.bytes", "fetch.max.bytes", "fetch.min.bytes", "fetch.error.backoff.ms",
        "isolation.level", "enable.partition.eof", "check.crcs", "allow.auto.create.topics",
        "auto.offset.reset", "offset.store.method", "consume.callback.max.messages", "client.rack",
    ]
    static let consumerOnlyPrefixes = ["consume_cb", "rebalance_cb", "offset_commit_cb"]

    /// Builds an `rd_kafka_conf_t`: `defaults` first (the caller may override them), then
    /// the caller's properties, then `enforced` (the wrapper's semantics depend on them, so
    /// a caller asking for a different value is an error rather than silently ignored).
    func makeConf(defaults: [(String, String)], enforced: [(String, String)]) throws(KafkaError) -> OpaquePointer {
        for (key, required) in enforced {
            if let given = self[key], given != required {
                throw KafkaError(
                    code: .invalidArgument,
                    message: "kafka property '\(key)' is managed by camfa and must be '\(required)', got '\(given)'")
            }
        }
        let conf = rd_kafka_conf_new()!
        do {
            for (key, value) in defaults + properties + enforced {
                try Self.set(conf, key, value)
            }
        } catch {
            rd_kafka_conf_destroy(conf)
            throw error
        }
        return conf
    }

    static func set(_ conf: OpaquePointer, _ key: String, _ value: String) throws(KafkaError) {
        var errstr = [CChar](repeating: 0, count: 512)
        let res = rd_kafka_conf_set(conf, key, value, &errstr, errstr.count)
        guard res == RD_KAFKA_CONF_OK else {
            let reason = String(decoding: errstr.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let kind = res == RD_KAFKA_CONF_UNKNOWN ? "unknown kafka property" : "invalid value for kafka property"
            throw KafkaError(code: .invalidArgument, message: "\(kind) '\(key)': \(reason)")
        }
    }
}

/// Creates a client handle; on failure the conf is destroyed here (librdkafka only takes
/// ownership on success).
func makeHandle(_ type: rd_kafka_type_t, _ conf: OpaquePointer, _ what: String) throws(KafkaError) -> OpaquePointer {
    var errstr = [CChar](repeating: 0, count: 512)
    guard let rk = rd_kafka_new(type, conf, &errstr, errstr.count) else {
        rd_kafka_conf_destroy(conf)
        let reason = String(decoding: errstr.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw KafkaError(code: .invalidArgument, message: "cannot create kafka \(what): \(reason)")
    }
    return rk
}

/// Forwards librdkafka's log lines (emitted from its internal threads) to swift-log.
/// The conf opaque must be an object conforming to `LogSink`.
protocol LogSink: AnyObject {
    var logger: Logger { get }
}

func installLogCallback(_ conf: OpaquePointer) {
    rd_kafka_conf_set_log_cb(conf) { rk, level, fac, buf in
        guard let rk, let opaque = rd_kafka_opaque(rk) else { return }
        let sink = Unmanaged<AnyObject>.fromOpaque(opaque).takeUnretainedValue() as? LogSink
        guard let logger = sink?.logger else { return }
        let swiftLevel: Logger.Level =
            switch level {
            case ...3: .error
            case 4: .warning
            case 5: .notice
            case 6: .info
            default: .debug
            }
        let facility = fac.map { String(cString: $0) } ?? ""
        let text = buf.map { String(cString: $0) } ?? ""
        logger.log(level: swiftLevel, "\(text)", metadata: ["rdkafka.facility": "\(facility)"])
    }
}

final class LogContext: LogSink, @unchecked Sendable {
    let logger: Logger
    init(logger: Logger) { self.logger = logger }
}
