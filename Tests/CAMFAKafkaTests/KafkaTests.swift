import Foundation
import Testing

@testable import CAMFAKafka

/// Serialized: fault injection (request errors, brokers down) acts on the whole shared
/// cluster, so no other test may be producing or consuming meanwhile.
@Suite(.serialized)
struct KafkaTests {
    @Test func configErrorsNameTheProperty() throws {
        let bad = KafkaConfig([("no.such.property", "1")])
        #expect {
            try KafkaProducer(config: bad)
        } throws: { e in
            let e = e as! KafkaError
            return e.code == .invalidArgument && e.message.contains("'no.such.property'")
        }
        let conflicting = KafkaConfig([("enable.auto.commit", "true")])
        #expect {
            try KafkaConsumer(config: conflicting, groupID: "g")
        } throws: { e in
            (e as! KafkaError).message.contains("'enable.auto.commit'")
        }
        let badValue = KafkaConfig([("linger.ms", "soon")])
        #expect {
            try KafkaProducer(config: badValue)
        } throws: { e in
            (e as! KafkaError).message.contains("'linger.ms'")
        }
    }

    @Test func theProducerLeavesConsumerPropertiesOut() {
        let shared = KafkaConfig(bootstrapServers: "b:9092", [
            ("session.timeout.ms", "6000"), ("auto.offset.reset", "earliest"), ("fetch.wait.max.ms", "10"),
            ("security.protocol", "SASL_SSL"), ("linger.ms", "1"),
        ])
        let producer = shared.forProducer
        #expect(producer.properties.map(\.0) == ["bootstrap.servers", "security.protocol", "linger.ms"])
        #expect(producer["security.protocol"] == "SASL_SSL")
    }

    @Test func produceThenConsumeEverythingInOrderWithHeadersAndTimestamps() throws {
        let topic = unique("roundtrip")
        try cluster.createTopic(topic, partitions: 4)
        let producer = try KafkaProducer(config: producerConfig())
        let n = 400
        for i in 0..<n {
            try producer.produce(
                topic: topic, key: bytes("user\(i % 13)"), value: bytes("v\(i)"),
                headers: [("source", bytes("test")), ("empty", nil)], token: UInt64(i + 1))
        }
        #expect(try producer.flush(timeoutMs: 10_000))
        let reports = producer.drainDeliveryReports()
        #expect(reports.count == n)
        #expect(Set(reports.map(\.token)) == Set((1...n).map(UInt64.init)))
        #expect(reports.allSatisfy { $0.error == nil && $0.offset >= 0 })

        let consumer = try KafkaConsumer(config: consumerConfig(), groupID: unique("g"))
        try consumer.subscribe([topic])
        let got = pollUntil([consumer], timeout: 20) { $0[0].count >= n }[0]
        #expect(got.count == n)
        #expect(got.allSatisfy { $0.headers == ["source=test", "empty"] })
        let now = Date().timeIntervalSince1970
        #expect(got.allSatisfy { abs(Double($0.timestamp ?? 0) / 1000 - now) < 60 })

        // Each delivery report's partition/offset holds exactly the message it was for.
        let byPosition = Dictionary(uniqueKeysWithValues: got.map { (PositionKey($0.tp, $0.offset), $0) })
        for r in reports {
            let m = byPosition[PositionKey(TopicPartition(topic, r.partition), r.offset)]
            #expect(m?.value == "v\(r.token - 1)")
            #expect(m?.key == "user\((r.token - 1) % 13)")
        }
        // Per partition: offsets 0,1,2,… with no gap, and per key the production order.
        for (tp, msgs) in Dictionary(grouping: got, by: \.tp) {
            #expect(msgs.map(\.offset) == (0..<Int64(msgs.count)).map { $0 }, "\(tp)")
        }
        for (key, msgs) in Dictionary(grouping: got, by: { $0.key! }) {
            let seq = msgs.map { Int($0.value!.dropFirst())! }
            #expect(seq == seq.sorted(), "order of \(key)")
            #expect(Set(msgs.map(\.tp)).count == 1, "\(key) spread over partitions")
        }
        #expect(consumer.close(timeoutSeconds: 10))
    }

    /// Both rebalance protocols: incremental (cooperative-sticky) and eager (range).
    @Test(arguments: ["cooperative-sticky", "range"])
    func startOffsetsFromTheDelegateAreHonouredAndCommitsAreVisible(strategy: String) throws {
        let topic = unique("start")
        try cluster.createTopic(topic, partitions: 2)
        let producer = try KafkaProducer(config: producerConfig())
        for p in Int32(0)..<2 {
            for i in 0..<20 { try producer.produce(topic: topic, partition: p, key: nil, value: bytes("p\(p)-\(i)"), token: 1) }
        }
        #expect(try producer.flush(timeoutMs: 5000))
        #expect(producer.drainDeliveryReports().allSatisfy { $0.error == nil })

        let delegate = RecordingDelegate()
        let p0 = TopicPartition(topic, 0)
        let p1 = TopicPartition(topic, 1)
        delegate.startOffsets = [p0: 13]  // p1: none → committed, i.e. auto.offset.reset=earliest
        let consumer = try KafkaConsumer(
            config: consumerConfig([("partition.assignment.strategy", strategy)]), groupID: unique("g"), delegate: delegate)
        delegate.consumer = consumer
        try consumer.subscribe([topic])
        let got = pollUntil([consumer], timeout: 20) { $0[0].count >= 7 + 20 }[0]
        #expect(delegate.assignedCalls == [[p0, p1]])
        #expect(got.filter { $0.tp == p0 }.map(\.offset) == Array(13..<20))
        #expect(got.filter { $0.tp == p0 }.first?.value == "p0-13")
        #expect(got.filter { $0.tp == p1 }.map(\.offset) == Array(0..<20))
        #expect(try consumer.position([p0, p1]) == [p0: 20, p1: 20])

        try consumer.commit([p0: 20, p1: 11])
        #expect(try consumer.committed([p0, p1]) == [p0: 20, p1: 11])
        try consumer.commit([p1: 15], async: true)
        var committed: [TopicPartition: Int64] = [:]
        let batch = KafkaBatch()
        let deadline = Date().addingTimeInterval(5)
        while committed[p1] != 15 && Date() < deadline {
            consumer.poll(into: batch, maxMessages: 10, timeoutMs: 50)  // serves the async commit
            committed = try consumer.committed([p0, p1])
        }
        #expect(committed == [p0: 20, p1: 15])
        let marks = try consumer.watermarks(p0)
        #expect(marks.low == 0 && marks.high == 20)
        #expect(consumer.close(timeoutSeconds: 10))
        // An orderly close revokes through the delegate, while the partitions are still held.
        #expect(delegate.revokedCalls == [[p0, p1]])
        #expect(delegate.stillAssignedAtRevoke == [true])
        #expect(delegate.lostCalls.isEmpty)
    }

    @Test func secondMemberSplitsPartitionsCooperativelyAndRevokeComesFirst() throws {
        let topic = unique("coop")
        try cluster.createTopic(topic, partitions: 4)
        let group = unique("g")
        let all = (0..<4).map { TopicPartition(topic, Int32($0)) }
        let producer = try KafkaProducer(config: producerConfig())
        for tp in all {
            for i in 0..<5 { try producer.produce(topic: topic, partition: tp.partition, key: nil, value: bytes("\(i)"), token: 0) }
        }
        #expect(try producer.flush(timeoutMs: 5000))
        let da = RecordingDelegate()
        let a = try KafkaConsumer(config: consumerConfig(), groupID: group, delegate: da)
        da.consumer = a
        // The handover: A commits what it processed of the partitions it gives up.
        var commitError: KafkaError?
        da.onRevoke = { revoked in
            do throws(KafkaError) { try a.commit(try a.position(revoked)) } catch { commitError = error }
        }
        try a.subscribe([topic])
        let consumedByA = pollUntil([a], timeout: 20) { $0[0].count == 20 }[0]
        #expect(da.assignedCalls == [all])
        #expect(consumedByA.count == 20)

        let db = RecordingDelegate()
        let b = try KafkaConsumer(config: consumerConfig(), groupID: group, delegate: db)
        db.consumer = b
        try b.subscribe([topic])
        pollUntil([a, b], timeout: 30) { _ in
            (try? a.assignment().count) == 2 && (try? b.assignment().count) == 2
        }
        let heldA = try a.assignment()
        let heldB = try b.assignment()
        #expect(heldA.count == 2 && heldB.count == 2)
        #expect(Set(heldA).isDisjoint(with: heldB) && Set(heldA + heldB) == Set(all))
        // Cooperative: A gives up only what moves, told before librdkafka unassigns it.
        #expect(da.revokedCalls == [heldB])
        #expect(da.stillAssignedAtRevoke == [true])
        #expect(da.assignedCalls.count == 1 || da.assignedCalls.dropFirst().allSatisfy(\.isEmpty))
        #expect(db.assignedCalls.filter { !$0.isEmpty } == [heldB])
        #expect(da.lostCalls.isEmpty && db.lostCalls.isEmpty)
        // B starts where A's revoke-time commit left off: nothing is consumed twice. On a
        // starved machine the mock broker sometimes moves the rebalance on before A's commit
        // arrives and refuses it (REBALANCE_IN_PROGRESS); the daemon does not depend on this
        // commit (its start offsets come from the checkpoint store), so that run only
        // records a known issue.
        let consumedByB = pollUntil([b], timeout: 1) { _ in false }[0]
        let committedB = try b.committed(heldB)
        let revokeCommitError = commitError
        withKnownIssue("the mock broker refused the revoke-time commit (REBALANCE_IN_PROGRESS)", isIntermittent: true) {
            #expect(revokeCommitError == nil)
            #expect(committedB == Dictionary(uniqueKeysWithValues: heldB.map { ($0, 5) }))
            #expect(consumedByB.isEmpty)
        } matching: { _ in revokeCommitError?.description.contains("REBALANCE_IN_PROGRESS") ?? false }
        // librdkafka 2.0.2 can block for good in the (un)assign of a close-time rebalance
        // after a cooperative one (KafkaConsumer.close abandons the handle then, which is
        // what a daemon needs); seen once in ~10 suite runs on a loaded machine.
        let closedB = b.close(timeoutSeconds: 10), closedA = a.close(timeoutSeconds: 10)
        withKnownIssue("librdkafka 2.0.2 stuck in a close-time rebalance with the mock broker", isIntermittent: true) {
            #expect(closedB)
            #expect(closedA)
        }
    }

    @Test func pauseStopsAndResumeRestartsAPartition() throws {
        let topic = unique("pause")
        try cluster.createTopic(topic, partitions: 1)
        let tp = TopicPartition(topic, 0)
        let producer = try KafkaProducer(config: producerConfig())
        func produce(_ range: Range<Int>) throws {
            for i in range { try producer.produce(topic: topic, partition: 0, key: nil, value: bytes("m\(i)"), token: UInt64(i)) }
            #expect(try producer.flush(timeoutMs: 5000))
        }
        try produce(0..<10)
        let consumer = try KafkaConsumer(config: consumerConfig(), groupID: unique("g"))
        try consumer.assign([tp: KafkaOffset.beginning])  // no group join: the test is about fetching
        let first = pollUntil([consumer], timeout: 20) { $0[0].count >= 10 }[0]
        #expect(first.map(\.offset) == Array(0..<10))

        try consumer.pause([tp])
        try produce(10..<20)
        let whilePaused = pollUntil([consumer], timeout: 1) { _ in false }[0]
        #expect(whilePaused.isEmpty)

        try consumer.resume([tp])
        let after = pollUntil([consumer], timeout: 10) { $0[0].count >= 10 }[0]
        #expect(after.map(\.offset) == Array(10..<20))
        #expect(after.first?.value == "m10")
        consumer.close()
    }

    @Test func retriableProduceErrorIsRetriedAndPermanentOneIsReported() throws {
        let topic = unique("faults")
        try cluster.createTopic(topic, partitions: 1)
        let producer = try KafkaProducer(config: producerConfig([("retry.backoff.ms", "50")]))
        // Warm up so the injected errors hit a Produce request, not the topic lookup.
        try producer.produce(topic: topic, key: nil, value: bytes("warm"), token: 1)
        #expect(try producer.flush(timeoutMs: 5000))
        #expect(producer.drainDeliveryReports().map(\.error) == [nil])

        cluster.pushRequestErrors(.produce, [.notLeaderForPartition, .notEnoughReplicas])
        try producer.produce(topic: topic, key: nil, value: bytes("retried"), token: 2)
        #expect(try producer.flush(timeoutMs: 10_000))
        let retried = producer.drainDeliveryReports()
        #expect(retried.count == 1)
        #expect(retried.first?.token == 2 && retried.first?.error == nil)

        cluster.pushRequestErrors(.produce, [.messageSizeTooLarge])
        defer { cluster.clearRequestErrors(.produce) }
        try producer.produce(topic: topic, key: nil, value: bytes("refused"), token: 3)
        #expect(try producer.flush(timeoutMs: 10_000))
        let refused = producer.drainDeliveryReports()
        #expect(refused.count == 1)
        #expect(refused.first?.token == 3)
        #expect(refused.first?.error?.code == .messageSizeTooLarge)
        #expect(producer.fatalError == nil)
        // The producer stays usable after a refused message.
        try producer.produce(topic: topic, key: nil, value: bytes("after"), token: 4)
        #expect(try producer.flush(timeoutMs: 10_000))
        #expect(producer.drainDeliveryReports().map { [$0.token: $0.error == nil] } == [[4: true]])

        // An authorization failure also poisons the topic in librdkafka's metadata cache:
        // the next enqueue is refused synchronously, so it too is surfaced, not dropped.
        cluster.pushRequestErrors(.produce, [.topicAuthorizationFailed])
        try producer.produce(topic: topic, key: nil, value: bytes("denied"), token: 5)
        #expect(try producer.flush(timeoutMs: 10_000))
        #expect(producer.drainDeliveryReports().map { [$0.token: $0.error?.code] } == [[5: .topicAuthorizationFailed]])
        #expect {
            try producer.produce(topic: topic, key: nil, value: bytes("denied again"), token: 6)
        } throws: { ($0 as? KafkaError)?.code == .topicAuthorizationFailed }
    }

    @Test func heartbeatFencingIsReportedAsLostThenTheGroupIsRejoined() throws {
        let topic = unique("lost")
        try cluster.createTopic(topic, partitions: 2)
        let delegate = RecordingDelegate()
        let consumer = try KafkaConsumer(config: consumerConfig(), groupID: unique("g"), delegate: delegate)
        delegate.consumer = consumer
        try consumer.subscribe([topic])
        pollUntil([consumer], timeout: 20) { _ in delegate.assignedCalls.count == 1 }
        let all = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        #expect(delegate.assignedCalls == [all])
        let firstMember = try #require(consumer.memberID)

        // The coordinator no longer knows the member: its partitions may be elsewhere already.
        cluster.pushRequestErrors(.heartbeat, [.unknownMemberID])
        defer { cluster.clearRequestErrors(.heartbeat) }
        pollUntil([consumer], timeout: 20) { _ in delegate.assignedCalls.count == 2 }
        #expect(delegate.lostCalls == [all])
        #expect(delegate.revokedCalls.isEmpty)
        #expect(delegate.assignedCalls.last == all)
        #expect(consumer.memberID != nil && consumer.memberID != firstMember)
        #expect(consumer.close(timeoutSeconds: 10))
    }

    @Test func fetchAndCommitFaultsAreRecoveredOrSurfaced() throws {
        let topic = unique("fetchfaults")
        try cluster.createTopic(topic, partitions: 1)
        let tp = TopicPartition(topic, 0)
        let producer = try KafkaProducer(config: producerConfig())
        for i in 0..<50 { try producer.produce(topic: topic, key: nil, value: bytes("m\(i)"), token: UInt64(i)) }
        #expect(try producer.flush(timeoutMs: 5000))

        let consumer = try KafkaConsumer(
            config: consumerConfig([("enable.partition.eof", "true"), ("fetch.error.backoff.ms", "50")]), groupID: unique("g"))
        try consumer.assign([tp: 0])
        cluster.pushRequestErrors(.fetch, [.notLeaderForPartition, .transport, .unknownTopicOrPartition])
        defer { cluster.clearRequestErrors(.fetch) }
        var got: [Int64] = []
        var eof: Int64?
        let batch = KafkaBatch()
        let deadline = Date().addingTimeInterval(20)
        while eof != 50 && Date() < deadline {
            consumer.poll(into: batch, maxMessages: 100, timeoutMs: 100)
            got += batch.records.map(\.offset)
            for case .partitionEOF(let p, let offset) in batch.events where p == tp { eof = offset }
        }
        // Every message exactly once despite the failed fetches; the end is reported as an event.
        #expect(got == Array(0..<50))
        #expect(eof == 50)

        // A refused commit is surfaced; the next one goes through.
        cluster.pushRequestErrors(.offsetCommit, [.topicAuthorizationFailed])
        #expect {
            try consumer.commit([tp: 50])
        } throws: { ($0 as? KafkaError)?.code == .topicAuthorizationFailed }
        try consumer.commit([tp: 50])
        #expect(try consumer.committed([tp]) == [tp: 50])
        consumer.close()
    }

    @Test func leaderBrokerDownThenUpLosesAndDuplicatesNothing() throws {
        let topic = unique("brokerdown")
        try cluster.createTopic(topic, partitions: 1, replicationFactor: 3)
        try cluster.setPartitionLeader(topic: topic, partition: 0, brokerID: 2)
        let tp = TopicPartition(topic, 0)
        let producer = try KafkaProducer(config: producerConfig([("retry.backoff.ms", "100")]))
        let consumer = try KafkaConsumer(config: consumerConfig(), groupID: unique("g"))
        try consumer.assign([tp: KafkaOffset.beginning])
        for i in 0..<10 { try producer.produce(topic: topic, key: nil, value: bytes("m\(i)"), token: UInt64(i)) }
        #expect(try producer.flush(timeoutMs: 5000))
        let before = pollUntil([consumer], timeout: 10) { $0[0].count >= 10 }[0]
        #expect(before.map(\.offset) == Array(0..<10))

        try cluster.setBrokerDown(2)
        for i in 10..<20 { try producer.produce(topic: topic, key: nil, value: bytes("m\(i)"), token: UInt64(i)) }
        #expect(try producer.flush(timeoutMs: 1000) == false)  // the leader is unreachable
        try cluster.setBrokerUp(2)
        #expect(try producer.flush(timeoutMs: 10_000))
        let reports = producer.drainDeliveryReports()
        #expect(reports.map(\.token).sorted() == (0..<20).map(UInt64.init))
        #expect(reports.allSatisfy { $0.error == nil })

        let after = pollUntil([consumer], timeout: 10) { $0[0].count >= 10 }[0]
        #expect(after.map(\.offset) == Array(10..<20))
        #expect(after.map(\.value) == (10..<20).map { "m\($0)" })
        #expect(try consumer.watermarks(tp).high == 20)
        consumer.close()
    }

    @Test func aFullLocalQueueBlocksInsteadOfDropping() throws {
        let topic = unique("queuefull")
        try cluster.createTopic(topic, partitions: 2)
        // Room for only 5 messages: nearly every produce finds the queue full.
        let producer = try KafkaProducer(config: producerConfig([("queue.buffering.max.messages", "5")]))
        let n = 300
        for i in 1...n { try producer.produce(topic: topic, key: bytes("k\(i)"), value: bytes("v\(i)"), token: UInt64(i)) }
        #expect(try producer.flush(timeoutMs: 10_000))
        let reports = producer.drainDeliveryReports()
        #expect(reports.map(\.token).sorted() == (1...n).map(UInt64.init))
        #expect(reports.allSatisfy { $0.error == nil })
    }

    @Test func fatalProducerErrorIsSurfacedAsAnError() throws {
        let producer = try KafkaProducer(config: producerConfig())
        producer.injectFatalErrorForTesting(.outOfOrderSequenceNumber)
        _ = producer.poll(timeoutMs: 100)  // the error callback is served by poll
        let fatal = try #require(producer.fatalError)
        #expect(fatal.code == .outOfOrderSequenceNumber)
        #expect(throws: KafkaError.self) {
            try producer.produce(topic: unique("never"), key: nil, value: bytes("x"), token: 1)
        }
    }

    @Test func closeReturnsWithinItsBoundWhenTheBrokersStall() throws {
        let topic = unique("close")
        try cluster.createTopic(topic, partitions: 2)
        let consumer = try KafkaConsumer(config: consumerConfig(), groupID: unique("g"))
        try consumer.subscribe([topic])
        pollUntil([consumer], timeout: 20) { _ in (try? consumer.assignment().count) == 2 }
        #expect(try consumer.assignment().count == 2)

        for id in Int32(1)...3 { try cluster.setRTT(brokerID: id, rttMs: 8000) }
        defer { for id in Int32(1)...3 { try? cluster.setRTT(brokerID: id, rttMs: 0) } }
        let start = Date()
        let clean = consumer.close(timeoutSeconds: 2)
        let took = Date().timeIntervalSince(start)
        // 8 s per response: leaving the group cannot finish, so the bound is what ends close.
        #expect(!clean)
        #expect(took < 3, "close took \(took) s")
    }
}

struct PositionKey: Hashable {
    var tp: TopicPartition
    var offset: Int64
    init(_ tp: TopicPartition, _ offset: Int64) { self.tp = tp; self.offset = offset }
}
