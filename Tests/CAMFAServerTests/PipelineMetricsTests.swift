import CAMFADaemon
import CAMFAKafka
import CAMFAPolicyFiles
import CAMFAServer
import Foundation
import Logging
import ServiceLifecycle
import Testing
import CAMFATestSupport

/// The metric hooks in the real pipeline: the mock broker, the example policies, a few
/// events (one of them not JSON), and the Prometheus text that /metrics would serve.
@Suite struct PipelineMetricsTests {
    static func value(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    @Test func thePipelineRecordsConsumedDeadLettersDecisionsLagAndLiveKeys() async throws {
        CAMFAMetrics.bootstrap()  // before the pipeline makes its metric objects
        var logger = Logger(label: "camfa-metrics-test")
        logger.logLevel = .error
        let cluster = try MockCluster(brokers: 1, logger: logger)
        defer { cluster.destroy() }
        var c = Configuration()
        // A topic of this test's own: other metric tests share the process's registry.
        c.topics.input = "metrics-test-\(UUID().uuidString.prefix(8))"
        try cluster.createTopic(c.topics.input, partitions: 1)
        for t in [c.topics.output, c.topics.deadLetter, c.topics.results] { try cluster.createTopic(t, partitions: 1) }
        c.kafka.bootstrap = cluster.bootstrapServers
        c.stateDir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-metrics-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: c.stateDir) }
        let policySet = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        let pipeline = Pipeline(options: Pipeline.Options(configuration: c, policySet: policySet, enrichment: nil, secret: testSecret), logger: logger)

        let before = CAMFAMetrics.registry.emitToString()
        let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: cluster.bootstrapServers, []), logger: logger)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        for i in 0..<5 {
            let event = #"{"originalIdentity":"metrics-user-\#(i)","requestDate":\#(now + Int64(i)),"appId":"app1"}"#
            try producer.produce(topic: c.topics.input, key: Array("metrics-user-\(i)".utf8), value: Array(event.utf8), token: UInt64(i))
        }
        try producer.produce(topic: c.topics.input, key: Array("x".utf8), value: Array("not json".utf8), token: 99)
        #expect(try producer.flush(timeoutMs: 10_000))

        let group = ServiceGroup(services: [PipelineService(pipeline: pipeline)], logger: logger)
        let running = Task { try await group.run() }
        // Handled, and one partition sample (once a second) taken after it. The loop ends as
        // soon as that holds; the long bound is for CI, where every suite runs at once on
        // two cores and the group join alone has taken more than 30 s.
        let deadline = Date().addingTimeInterval(120)
        var text = ""
        while Date() < deadline {
            try await Task.sleep(for: .milliseconds(200))
            text = CAMFAMetrics.registry.emitToString()
            // The once-a-second sample may predate the last events: wait for one after them.
            if pipeline.counters.processed + pipeline.counters.deadLettered >= 6,
               text.contains("camfa_consumer_lag{partition=\"0\"} 0"), pipeline.health.maxConsumerLag?.lag == 0,
               (Self.value(text, #"camfa_live_keys{partition="0"}"#) ?? 0) > 0 { break }
        }
        // Read before shutdown: the revoke at shutdown rightly forgets the partition's lag.
        let healthLag = pipeline.health.maxConsumerLag?.lag
        let handled = pipeline.counters.processed + pipeline.counters.deadLettered
        await group.triggerGracefulShutdown()
        try await running.value

        if ProcessInfo.processInfo.environment["CAMFA_PRINT_METRICS"] != nil { print(text) }
        // This pipeline's own count first: the series below are process-wide.
        #expect(handled >= 6, "the pipeline handled \(handled) of 6 events before the deadline")
        let consumed = (Self.value(text, "camfa_events_consumed_total") ?? 0) - (Self.value(before, "camfa_events_consumed_total") ?? 0)
        #expect(consumed >= 6)
        let processed = (Self.value(text, "camfa_events_processed_total") ?? 0) - (Self.value(before, "camfa_events_processed_total") ?? 0)
        #expect(processed >= 5)
        #expect((Self.value(text, #"camfa_dead_letters_total{reason="invalid"}"#) ?? 0) >= 1)
        #expect(text.contains("camfa_decisions_total{flow="))
        #expect((Self.value(text, "camfa_processing_seconds_count") ?? 0) >= 6)
        #expect(text.contains(#"camfa_consumer_lag{partition="0"} 0"#))
        #expect((Self.value(text, #"camfa_live_keys{partition="0"}"#) ?? 0) > 0)
        #expect(text.contains(#"camfa_checkpoint_age_seconds{partition="0"}"#))
        #expect(healthLag == 0)
    }
}
