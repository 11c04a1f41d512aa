import CRdKafka

/// A librdkafka error code (`rd_kafka_resp_err_t`). Negative values are raised by the
/// client itself, positive ones come from the broker's wire protocol.
public struct KafkaErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    init(_ err: rd_kafka_resp_err_t) { self.rawValue = err.rawValue }

    var c: rd_kafka_resp_err_t { rd_kafka_resp_err_t(rawValue: rawValue) }

    /// librdkafka's symbolic name, e.g. `NOT_LEADER_FOR_PARTITION` or `_QUEUE_FULL`.
    public var name: String { String(cString: rd_kafka_err2name(c)) }
    public var description: String { "\(name) (\(rawValue))" }

    public static let noError = Self(RD_KAFKA_RESP_ERR_NO_ERROR)
    public static let invalidArgument = Self(RD_KAFKA_RESP_ERR__INVALID_ARG)
    public static let queueFull = Self(RD_KAFKA_RESP_ERR__QUEUE_FULL)
    public static let partitionEOF = Self(RD_KAFKA_RESP_ERR__PARTITION_EOF)
    public static let transport = Self(RD_KAFKA_RESP_ERR__TRANSPORT)
    public static let allBrokersDown = Self(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
    public static let timedOut = Self(RD_KAFKA_RESP_ERR__TIMED_OUT)
    public static let messageTimedOut = Self(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT)
    public static let fatal = Self(RD_KAFKA_RESP_ERR__FATAL)
    public static let noOffset = Self(RD_KAFKA_RESP_ERR__NO_OFFSET)
    public static let state = Self(RD_KAFKA_RESP_ERR__STATE)
    public static let unknownPartition = Self(RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION)
    public static let unknownTopic = Self(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
    public static let offsetOutOfRange = Self(RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
    public static let unknownTopicOrPartition = Self(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    public static let invalidMessageSize = Self(RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE)
    public static let leaderNotAvailable = Self(RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
    public static let notLeaderForPartition = Self(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION)
    public static let requestTimedOut = Self(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT)
    public static let messageSizeTooLarge = Self(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
    public static let notCoordinator = Self(RD_KAFKA_RESP_ERR_NOT_COORDINATOR)
    public static let illegalGeneration = Self(RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION)
    public static let unknownMemberID = Self(RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID)
    public static let rebalanceInProgress = Self(RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS)
    public static let topicAuthorizationFailed = Self(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED)
    public static let notEnoughReplicas = Self(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS)
    public static let invalidRecord = Self(RD_KAFKA_RESP_ERR_INVALID_RECORD)
    public static let outOfOrderSequenceNumber = Self(RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER)
}

/// An error from librdkafka or from this wrapper, with a message that names what failed
/// (the property, the partition, the call).
public struct KafkaError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: KafkaErrorCode
    public var message: String

    public init(code: KafkaErrorCode, message: String) {
        self.code = code
        self.message = message
    }

    init(_ err: rd_kafka_resp_err_t, _ context: String) {
        let text = String(cString: rd_kafka_err2str(err))
        self.init(code: KafkaErrorCode(err), message: "\(context): \(text)")
    }

    /// Takes ownership of an `rd_kafka_error_t` (destroys it).
    init(consuming error: OpaquePointer, _ context: String) {
        let code = KafkaErrorCode(rd_kafka_error_code(error))
        let text = String(cString: rd_kafka_error_string(error))
        rd_kafka_error_destroy(error)
        self.init(code: code, message: "\(context): \(text)")
    }

    public var description: String { "\(code.name): \(message)" }
}

/// Special offsets understood wherever a start offset is accepted.
public enum KafkaOffset {
    /// The partition's first retained message.
    public static let beginning: Int64 = Int64(RD_KAFKA_OFFSET_BEGINNING)
    /// The partition's high watermark: only messages produced from now on.
    public static let end: Int64 = Int64(RD_KAFKA_OFFSET_END)
    /// The group's committed offset, or `auto.offset.reset` when there is none.
    public static let stored: Int64 = Int64(RD_KAFKA_OFFSET_STORED)
    static let invalid: Int64 = Int64(RD_KAFKA_OFFSET_INVALID)
}

public struct TopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }

    public static func < (a: Self, b: Self) -> Bool {
        a.topic == b.topic ? a.partition < b.partition : a.topic < b.topic
    }
}

/// Kafka protocol request types, for fault injection on the mock cluster.
public struct KafkaAPIKey: RawRepresentable, Hashable, Sendable {
    public var rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    public static let produce = Self(rawValue: 0)
    public static let fetch = Self(rawValue: 1)
    public static let listOffsets = Self(rawValue: 2)
    public static let metadata = Self(rawValue: 3)
    public static let offsetCommit = Self(rawValue: 8)
    public static let offsetFetch = Self(rawValue: 9)
    public static let findCoordinator = Self(rawValue: 10)
    public static let joinGroup = Self(rawValue: 11)
    public static let heartbeat = Self(rawValue: 12)
    public static let leaveGroup = Self(rawValue: 13)
    public static let syncGroup = Self(rawValue: 14)
    public static let initProducerID = Self(rawValue: 22)
}

// MARK: - partition lists

/// Owns an `rd_kafka_topic_partition_list_t` for the duration of one call.
final class PartitionList {
    let list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>

    init(_ partitions: some Collection<TopicPartition>, offsets: [TopicPartition: Int64]? = nil) {
        list = rd_kafka_topic_partition_list_new(Int32(partitions.count))
        for tp in partitions {
            let element = rd_kafka_topic_partition_list_add(list, tp.topic, tp.partition)!
            if let offsets { element.pointee.offset = offsets[tp] ?? KafkaOffset.invalid }
        }
    }

    deinit { rd_kafka_topic_partition_list_destroy(list) }

    static func entries(_ list: UnsafePointer<rd_kafka_topic_partition_list_t>?)
        -> [(tp: TopicPartition, offset: Int64, err: rd_kafka_resp_err_t)]
    {
        guard let list, let elems = list.pointee.elems else { return [] }
        return (0..<Int(list.pointee.cnt)).map { i in
            let e = elems[i]
            return (TopicPartition(String(cString: e.topic), e.partition), e.offset, e.err)
        }
    }

    var entries: [(tp: TopicPartition, offset: Int64, err: rd_kafka_resp_err_t)] {
        Self.entries(list)
    }

    /// The first per-partition error, as a `KafkaError` naming the partition.
    func firstError(_ context: String) -> KafkaError? {
        for e in entries where e.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            return KafkaError(e.err, "\(context) \(e.tp)")
        }
        return nil
    }
}

/// Carries a value whose thread-safety is guaranteed by the surrounding protocol
/// (e.g. a handle touched by exactly one helper thread) across a `@Sendable` boundary.
struct UncheckedSendable<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
