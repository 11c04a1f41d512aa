import Foundation
import Testing

@testable import CAMFAKafka

/// Answers "borrow the value bytes or copy them into [UInt8]?" with numbers. Opt-in
/// (CAMFA_KAFKA_BENCH=1) because it produces 40k messages; run it in release for numbers
/// that mean something: `CAMFA_KAFKA_BENCH=1 swift test -c release --filter BorrowVersusCopy`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["CAMFA_KAFKA_BENCH"] == "1"))
struct BorrowVersusCopyBenchmark {
    @Test func borrowVersusCopy() throws {
        let topic = unique("bench")
        // 8 partitions keep each under the mock's ~5 MB retention, so nothing is dropped.
        try cluster.createTopic(topic, partitions: 8)
        let producer = try KafkaProducer(config: producerConfig([("queue.buffering.max.messages", "200000")]))
        let n = 40_000
        let payload = [UInt8](repeating: 0x61, count: 600)  // a typical UEBA event's size
        for i in 0..<n { try producer.produce(topic: topic, key: bytes("user\(i % 1000)"), value: payload, token: UInt64(i)) }
        #expect(try producer.flush(timeoutMs: 60_000))

        let consumer = try KafkaConsumer(config: consumerConfig(), groupID: unique("g"))
        try consumer.subscribe([topic])
        let batch = KafkaBatch()
        var seen = 0
        var borrowNs: UInt64 = 0
        var copyNs: UInt64 = 0
        var checksum = 0
        let deadline = Date().addingTimeInterval(60)
        while seen < n && Date() < deadline {
            consumer.poll(into: batch, maxMessages: 1000, timeoutMs: 100)
            seen += batch.records.count
            var t = DispatchTime.now().uptimeNanoseconds
            for r in batch.records { checksum &+= Int(r.value![r.value!.count - 1]) &+ r.key!.count }
            borrowNs += DispatchTime.now().uptimeNanoseconds - t
            t = DispatchTime.now().uptimeNanoseconds
            for r in batch.records {
                let v = [UInt8](r.value!)
                let k = [UInt8](r.key!)
                checksum &+= Int(v[v.count - 1]) &+ k.count
            }
            copyNs += DispatchTime.now().uptimeNanoseconds - t
        }
        #expect(seen == n)
        // Both loops read every record's last value byte and key length.
        let expected = 2 * (0..<n).reduce(0) { $0 + 0x61 + "user\($1 % 1000)".utf8.count }
        #expect(checksum == expected)
        print("borrow: \(Double(borrowNs) / Double(seen)) ns/record, copy key+value: \(Double(copyNs) / Double(seen)) ns/record over \(seen) records")
        consumer.close()
    }
}
