import Foundation
import Testing

@testable import CAMFAKafka

/// One mock cluster per test process (DESIGN.md, test broker), shared by every test.
let cluster: MockCluster = {
    do { return try MockCluster(brokers: 3) } catch { fatalError("mock cluster: \(error)") }
}()

/// Names unique within the process, so tests sharing the cluster never share a topic or group.
func unique(_ prefix: String) -> String {
    "\(prefix).\(UUID().uuidString.prefix(8))"
}

func consumerConfig(_ extra: [(String, String)] = []) -> KafkaConfig {
    KafkaConfig(bootstrapServers: cluster.bootstrapServers, [
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", "3000"),
        ("heartbeat.interval.ms", "300"),
        ("topic.metadata.refresh.interval.ms", "1000"),
        ("log_level", "4"),
    ] + extra)
}

func producerConfig(_ extra: [(String, String)] = []) -> KafkaConfig {
    KafkaConfig(bootstrapServers: cluster.bootstrapServers, [("log_level", "4")] + extra)
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }
func text(_ b: UnsafeRawBufferPointer?) -> String? { b.map { String(decoding: $0, as: UTF8.self) } }

/// Copied out of a batch so assertions can run after the batch is reused.
struct Received: Equatable {
    var tp: TopicPartition
    var offset: Int64
    var key: String?
    var value: String?
    /// `name=value`, or `name` for a header without a value.
    var headers: [String] = []
    var timestamp: Int64?
}

/// Polls the consumers round-robin (all on this thread, which owns them) until `done`
/// or the timeout; returns what each received.
@discardableResult
func pollUntil(
    _ consumers: [KafkaConsumer], timeout: Double, _ done: ([[Received]]) -> Bool
) -> [[Received]] {
    var got = Array(repeating: [Received](), count: consumers.count)
    let batch = KafkaBatch()
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline && !done(got) {
        for (i, c) in consumers.enumerated() {
            c.poll(into: batch, maxMessages: 500, timeoutMs: 50)
            for r in batch.records {
                let headers = r.headers().map { h in h.1.map { "\(h.0)=\(String(decoding: $0, as: UTF8.self))" } ?? h.0 }
                got[i].append(Received(
                    tp: r.topicPartition, offset: r.offset, key: text(r.key), value: text(r.value),
                    headers: headers, timestamp: r.timestamp))
            }
        }
    }
    return got
}

/// Records delegate calls together with the assignment librdkafka held at that moment.
final class RecordingDelegate: KafkaRebalanceDelegate {
    var startOffsets: [TopicPartition: Int64] = [:]
    var assignedCalls: [[TopicPartition]] = []
    var revokedCalls: [[TopicPartition]] = []
    var lostCalls: [[TopicPartition]] = []
    /// For each revoke: were the revoked partitions still assigned when we were told?
    var stillAssignedAtRevoke: [Bool] = []
    weak var consumer: KafkaConsumer?
    /// Runs inside `revoked`, e.g. the owner's final commit of the partitions it hands over.
    var onRevoke: (([TopicPartition]) -> Void)?

    func assigned(_ partitions: [TopicPartition]) -> [TopicPartition: Int64] {
        assignedCalls.append(partitions.sorted())
        return startOffsets.filter { partitions.contains($0.key) }
    }

    func revoked(_ partitions: [TopicPartition]) {
        revokedCalls.append(partitions.sorted())
        let held = Set((try? consumer?.assignment()) ?? [])
        stillAssignedAtRevoke.append(Set(partitions).isSubset(of: held))
        onRevoke?(partitions)
    }

    func lost(_ partitions: [TopicPartition]) { lostCalls.append(partitions.sorted()) }
}
