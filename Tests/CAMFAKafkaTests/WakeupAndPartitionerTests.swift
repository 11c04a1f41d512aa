import Foundation
import Testing

@testable import CAMFAKafka

@Suite struct WakeupAndPartitionerTests {
    /// `wakeup` from another thread ends a poll that would otherwise wait 20 s for
    /// messages that never come. The bound checked is far from both numbers: it tells an
    /// interrupted wait from a full one, it does not measure speed.
    @Test func wakeupInterruptsAWaitingPoll() throws {
        let topic = unique("wakeup")
        try cluster.createTopic(topic, partitions: 1)
        let consumer = try KafkaConsumer(config: consumerConfig(), groupID: unique("g"))
        try consumer.assign([TopicPartition(topic, 0): KafkaOffset.end])
        let batch = KafkaBatch()
        consumer.poll(into: batch, maxMessages: 10, timeoutMs: 200)  // settle the assignment
        let waker = UncheckedBox(consumer)
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) { waker.value.wakeup() }
        let start = Date()
        let n = consumer.poll(into: batch, maxMessages: 10, timeoutMs: 20_000)
        let waited = Date().timeIntervalSince(start)
        #expect(n == 0)
        #expect(waited < 10, "poll waited \(waited) s despite wakeup")
        // A wakeup while nobody polls is not lost: the next poll returns at once.
        consumer.wakeup()
        let again = Date()
        consumer.poll(into: batch, maxMessages: 10, timeoutMs: 20_000)
        #expect(Date().timeIntervalSince(again) < 10)
        consumer.close(timeoutSeconds: 2)
        consumer.wakeup()  // after close: a no-op, not a crash
    }

    /// The computed partition of a key is where librdkafka's default producer put it.
    @Test func partitionerMatchesTheProducer() throws {
        let topic = unique("partitioner")
        try cluster.createTopic(topic, partitions: 7)
        let producer = try KafkaProducer(config: producerConfig())
        #expect(try producer.partitionCount(topic: topic) == 7)
        let keys = (0..<60).map { "user-\($0)-\(UUID().uuidString.prefix(4))" }
        for (i, k) in keys.enumerated() {
            try producer.produce(topic: topic, key: bytes(k), value: bytes("v"), token: UInt64(i + 1))
        }
        #expect(try producer.flush(timeoutMs: 10_000))
        let reports = producer.drainDeliveryReports()
        #expect(reports.count == keys.count)
        let partitioner = try #require(KafkaPartitioner(property: nil))
        for r in reports {
            #expect(partitioner.partition(key: bytes(keys[Int(r.token) - 1]), partitionCount: 7) == r.partition)
        }
        #expect(Set(reports.map(\.partition)).count > 1)
        #expect(KafkaPartitioner(property: "random") == nil)
        #expect(partitioner.partition(key: [], partitionCount: 7) == nil)
    }
}

final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
