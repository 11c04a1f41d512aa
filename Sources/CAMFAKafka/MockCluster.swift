import CRdKafka
import Logging

/// librdkafka's in-process mock Kafka cluster: the real wire protocol on loopback ports,
/// with consumer groups, offset commits, the idempotent producer and fault injection.
/// Known limits (librdkafka 2.0.2): about 5 MB retained per partition, no CreateTopics,
/// the first group join takes about 3 s.
///
/// Threading: every method may be called from any thread; librdkafka forwards each call to
/// the mock cluster's own thread and waits for it.
public final class MockCluster: @unchecked Sendable {
    public let logger: Logger
    /// `HOST:PORT[,HOST:PORT…]`, one entry per broker.
    public let bootstrapServers: String
    public let brokerCount: Int
    private let rk: OpaquePointer
    private let cluster: OpaquePointer
    private let context: Unmanaged<LogContext>
    private var destroyed = false

    /// Starts `brokers` brokers (ids 1…brokers) on 127.0.0.1 ephemeral ports.
    public init(brokers: Int = 3, logger: Logger = Logger(label: "camfa.kafka.mock")) throws(KafkaError) {
        guard brokers >= 1 else {
            throw KafkaError(code: .invalidArgument, message: "mock cluster needs at least one broker, got \(brokers)")
        }
        self.logger = logger
        self.brokerCount = brokers
        // The cluster needs a client handle for its bookkeeping only; it never connects
        // anywhere, so its "no bootstrap.servers" notice is noise.
        let conf = try KafkaConfig().makeConf(defaults: [("log_level", "3")], enforced: [])
        installLogCallback(conf)
        let context = Unmanaged.passRetained(LogContext(logger: logger))
        rd_kafka_conf_set_opaque(conf, context.toOpaque())
        let rk: OpaquePointer
        do { rk = try makeHandle(RD_KAFKA_PRODUCER, conf, "mock cluster handle") } catch {
            context.release()
            throw error
        }
        guard let cluster = rd_kafka_mock_cluster_new(rk, Int32(brokers)) else {
            rd_kafka_destroy(rk)
            context.release()
            throw KafkaError(code: .invalidArgument, message: "rd_kafka_mock_cluster_new(\(brokers) brokers) failed")
        }
        self.rk = rk
        self.cluster = cluster
        self.context = context
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    deinit { destroy() }

    /// Stops the brokers; clients still connected see transport errors.
    public func destroy() {
        guard !destroyed else { return }
        destroyed = true
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(rk)
        context.release()
    }

    /// The mock has no CreateTopics API; topics are created out of band here (topics a
    /// client merely asks about are auto-created with the mock's default partition count).
    public func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws(KafkaError) {
        let err = rd_kafka_mock_topic_create(cluster, name, partitions, replicationFactor)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(err, "create topic '\(name)' (\(partitions) partitions, rf \(replicationFactor))")
        }
    }

    /// The broker closes its connections and refuses new ones until `setBrokerUp`.
    public func setBrokerDown(_ brokerID: Int32) throws(KafkaError) {
        let err = rd_kafka_mock_broker_set_down(cluster, brokerID)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "set broker \(brokerID) down") }
    }

    public func setBrokerUp(_ brokerID: Int32) throws(KafkaError) {
        let err = rd_kafka_mock_broker_set_up(cluster, brokerID)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "set broker \(brokerID) up") }
    }

    /// Adds `rttMs` of latency to every response of the broker.
    public func setRTT(brokerID: Int32, rttMs: Int32) throws(KafkaError) {
        let err = rd_kafka_mock_broker_set_rtt(cluster, brokerID, rttMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(err, "set broker \(brokerID) rtt") }
    }

    /// The next `errors.count` requests of type `apiKey` (to any broker) fail with these
    /// errors, in order. `.transport` makes the broker drop the connection instead.
    public func pushRequestErrors(_ apiKey: KafkaAPIKey, _ errors: [KafkaErrorCode]) {
        let codes = errors.map(\.c)
        codes.withUnsafeBufferPointer { buf in
            rd_kafka_mock_push_request_errors_array(cluster, apiKey.rawValue, buf.count, buf.baseAddress)
        }
    }

    public func clearRequestErrors(_ apiKey: KafkaAPIKey) {
        rd_kafka_mock_clear_request_errors(cluster, apiKey.rawValue)
    }

    /// Moves partition leadership, e.g. to a broker that is about to go down.
    public func setPartitionLeader(topic: String, partition: Int32, brokerID: Int32) throws(KafkaError) {
        let err = rd_kafka_mock_partition_set_leader(cluster, topic, partition, brokerID)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw KafkaError(err, "set leader of \(topic)[\(partition)] to broker \(brokerID)")
        }
    }
}
