import CRdKafka
import Foundation

/// The raw limit for `camfa-bench e2e`: the least a consumer can do with the same data on
/// the same machine — librdkafka's poll loop, counting messages and bytes, no decoding.
/// CRdKafka directly, not camfa's wrapper, so none of camfa's own code is in the figure;
/// the group settings that shape fetching are camfa's (cooperative-sticky, manual offsets,
/// the same prefetch bound).
enum RawConsumerBench {
    struct Result {
        var messages = 0
        var bytes = 0
        /// From the first message received to the last.
        var firstToLastSeconds = 0.0
        /// Between the receipt of 10 % and 90 % of the expected messages: the steady state,
        /// measured the way camfa's rate is.
        var steadySeconds = 0.0
        /// From subscribe to the first message (group join, first fetch).
        var startSeconds = 0.0
        /// CPU time of this process (the poll loop and librdkafka's threads) between 10 % and 90 %.
        var steadyCPUSeconds = 0.0
        var eventsPerSecond: Double { firstToLastSeconds > 0 ? Double(max(0, messages - 1)) / firstToLastSeconds : 0 }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func run(bootstrap: String, topic: String, group: String, expected: Int, timeout: Double) throws -> Result {
        guard let conf = rd_kafka_conf_new() else { throw Failure(description: "raw consumer: rd_kafka_conf_new failed") }
        let properties = [
            ("bootstrap.servers", bootstrap), ("group.id", group), ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"), ("auto.offset.reset", "earliest"),
            ("partition.assignment.strategy", "cooperative-sticky"), ("queued.max.messages.kbytes", "16384"),
        ]
        var errstr = [CChar](repeating: 0, count: 512)
        for (k, v) in properties where rd_kafka_conf_set(conf, k, v, &errstr, errstr.count) != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(conf)
            throw Failure(description: "raw consumer: property \(k)=\(v): \(Self.text(errstr))")
        }
        guard let rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &errstr, errstr.count) else {
            rd_kafka_conf_destroy(conf)
            throw Failure(description: "raw consumer: \(Self.text(errstr))")
        }
        defer { rd_kafka_destroy(rk) }
        rd_kafka_poll_set_consumer(rk)
        let list = rd_kafka_topic_partition_list_new(1)!
        rd_kafka_topic_partition_list_add(list, topic, RD_KAFKA_PARTITION_UA)
        let err = rd_kafka_subscribe(rk, list)
        rd_kafka_topic_partition_list_destroy(list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw Failure(description: "raw consumer: subscribe to \(topic): \(String(cString: rd_kafka_err2str(err)))")
        }

        var r = Result()
        let subscribed = benchNow()
        let deadline = subscribed + timeout
        let low = expected / 10, high = expected - expected / 10
        var first = 0.0, last = 0.0, tLow = 0.0, tHigh = 0.0, cpuLow = 0.0, cpuHigh = 0.0
        while r.messages < expected {
            guard let msg = rd_kafka_consumer_poll(rk, 100) else {
                if benchNow() > deadline { break }
                continue
            }
            if msg.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                r.messages += 1
                r.bytes += msg.pointee.len + msg.pointee.key_len
                if r.messages == 1 { first = benchNow() }
                if r.messages == low { tLow = benchNow(); cpuLow = ProcessCPU.ownSeconds() }
                if r.messages == high { tHigh = benchNow(); cpuHigh = ProcessCPU.ownSeconds() }
            }
            rd_kafka_message_destroy(msg)
        }
        last = benchNow()
        _ = rd_kafka_consumer_close(rk)
        guard r.messages >= expected else {
            throw Failure(description: "raw consumer: received \(r.messages) of \(expected) messages within \(Int(timeout)) s")
        }
        r.firstToLastSeconds = last - first
        r.steadySeconds = tHigh - tLow
        r.steadyCPUSeconds = cpuHigh - cpuLow
        r.startSeconds = first - subscribed
        return r
    }
}
