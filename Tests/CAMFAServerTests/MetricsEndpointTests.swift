@testable import CAMFACore
@testable import CAMFADaemon
import CAMFAServer
import Foundation
import Testing

@Suite struct MetricsEndpointTests {
    @Test func metricsAreKeyedByDefaultAndOpenWhenConfigured() async throws {
        try await withServer { client in
            let keyless = try await client.send("GET", "/metrics", template: "/metrics")
            #expect(keyless.status == 401)
            let keyed = try await client.send("GET", "/metrics", template: "/metrics", key: TestKeys.admin)
            #expect(keyed.status == 200)
        }
        try await withServer({ $0.openEndpoints = ["/healthz", "/metrics"] }) { client in
            let open = try await client.send("GET", "/metrics", template: "/metrics")
            #expect(open.status == 200)
            #expect(open.header("Content-Type")?.hasPrefix("text/plain") == true)
            let readyz = try await client.send("GET", "/readyz", template: "/readyz")
            #expect(readyz.status == 401)
        }
    }

    @Test func thePipelineMetricsReachTheScrape() async throws {
        CAMFAMetrics.bootstrap()
        let metrics = PipelineMetrics()
        let decision = Decision(
            flow: "metrics-test", action: .mfa, methods: [.email, .sms], branch: 0, suppressedByCooldown: false,
            challengeId: "c", expiresAt: 1, failMode: .open, firedPolicies: [], errors: [], returns: ValueMap())
        metrics.decided([decision, decision])
        metrics.deadLettered(reason: "metrics-test-reason: detail with a user id that must not become a label")
        metrics.time {}
        let health = PipelineHealth()
        metrics.sample([7_777: (lag: 12, liveKeys: 5, parked: 3)], health: health)
        #expect(health.maxConsumerLag?.lag == 12)
        // The key tasks' loop: the same names, told apart (README "Repartitioning").
        let keys = PipelineMetrics(prefix: "camfa_key_task_")
        keys.sample([7_777: (lag: 4, liveKeys: 9, parked: 0)], health: PipelineHealth())
        try await withServer { client in
            let text = try await client.send("GET", "/metrics", template: "/metrics", key: TestKeys.admin).text
            #expect(text.contains(#"camfa_decisions_total{flow="metrics-test",action="mfa",method="email"} 2"#))
            #expect(text.contains(#"camfa_dead_letters_total{reason="metrics-test-reason"} 1"#))
            #expect(!text.contains("user id"))
            #expect(text.contains(#"camfa_consumer_lag{partition="7777"} 12"#))
            #expect(text.contains(#"camfa_live_keys{partition="7777"} 5"#))
            #expect(text.contains(#"camfa_parked_records{partition="7777"} 3"#))
            #expect(text.contains(#"camfa_key_task_consumer_lag{partition="7777"} 4"#), "\(text.split(separator: "\n").filter { $0.contains("7777") })")
            #expect(text.contains("camfa_processing_seconds_bucket"))
        }
        // A partition no longer owned loses its gauges.
        metrics.sample([:], health: health)
        keys.sample([:], health: PipelineHealth())
        #expect(health.maxConsumerLag == nil)
        try await withServer { client in
            let text = try await client.send("GET", "/metrics", template: "/metrics", key: TestKeys.admin).text
            #expect(!text.contains(#"partition="7777""#))
        }
    }
}
