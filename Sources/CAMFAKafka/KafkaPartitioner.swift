import CRdKafka

/// Which partition librdkafka's producer puts a keyed message in, computed without
/// producing: so the daemon can tell which instance owns a user's state. It must match
/// the producers' `partitioner` property; librdkafka's default, `consistent_random`
/// (CRC32 of the key), is what camfa and kcat use. Java clients use `murmur2_random`.
public enum KafkaPartitioner: String, Sendable, CaseIterable {
    case consistent, consistentRandom = "consistent_random", murmur2, murmur2Random = "murmur2_random"
    case fnv1a, fnv1aRandom = "fnv1a_random"

    /// The partitioner named by a librdkafka `partitioner` property (nil: the default).
    /// Returns nil for `random`, which no key can predict.
    public init?(property: String?) {
        guard let property else { self = .consistentRandom; return }
        self.init(rawValue: property)
    }

    /// The partition of a non-empty `key` among `partitionCount` partitions, or nil for an
    /// empty key (the `_random` partitioners pick a random partition then) or no partitions.
    public func partition(key: [UInt8], partitionCount: Int32) -> Int32? {
        guard !key.isEmpty, partitionCount > 0 else { return nil }
        // With a non-empty key none of these functions reads the topic handle or opaques.
        return key.withUnsafeBytes { k -> Int32 in
            let f: (OpaquePointer?, UnsafeRawPointer?, Int, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 =
                switch self {
                case .consistent: rd_kafka_msg_partitioner_consistent
                case .consistentRandom: rd_kafka_msg_partitioner_consistent_random
                case .murmur2: rd_kafka_msg_partitioner_murmur2
                case .murmur2Random: rd_kafka_msg_partitioner_murmur2_random
                case .fnv1a: rd_kafka_msg_partitioner_fnv1a
                case .fnv1aRandom: rd_kafka_msg_partitioner_fnv1a_random
                }
            return f(nil, k.baseAddress, k.count, partitionCount, nil, nil)
        }
    }
}

extension KafkaProducer {
    /// The topic's partition count from the cluster's metadata (a broker round trip).
    public func partitionCount(topic: String, timeoutMs: Int32 = 5000) throws(KafkaError) -> Int32 {
        guard let rkt = rd_kafka_topic_new(handle, topic, nil) else {
            throw KafkaError(code: .invalidArgument, message: "cannot create a topic handle for '\(topic)'")
        }
        defer { rd_kafka_topic_destroy(rkt) }
        var md: UnsafePointer<rd_kafka_metadata>? = nil
        let err = rd_kafka_metadata(handle, 0, rkt, &md, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let md else { throw KafkaError(err, "metadata of topic '\(topic)'") }
        defer { rd_kafka_metadata_destroy(md) }
        guard md.pointee.topic_cnt >= 1, let t = md.pointee.topics?[0] as rd_kafka_metadata_topic? else {
            throw KafkaError(code: .unknownTopic, message: "no metadata for topic '\(topic)'")
        }
        guard t.err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError(t.err, "metadata of topic '\(topic)'") }
        return t.partition_cnt
    }
}
