import Foundation
import Testing
import CAMFATestSupport

/// `camfa-bench e2e` with tiny parameters: the real broker, raw consumer, daemon, latency
/// and memory phases run, and the JSON it writes carries every figure with sane values.
/// Nothing here asserts a speed: the machine is shared.
@Suite("camfa-bench e2e", .serialized)
struct E2EBenchTests {
    @Test("a tiny run writes a JSON result with every figure, consistent with each other")
    func tinyRun() throws {
        let results = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-e2e-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: results) }
        let run = try runCamfaBench([
            "e2e", "--events", "10000", "--partitions", "4", "--users", "1000", "--rate", "1000",
            "--latency-seconds", "3", "--memory-users", "2000", "--data", "/nonexistent", "--results", results.path, "--repartition",
        ])
        #expect(run.status == 0, "camfa-bench e2e failed: \(run.stderr.suffix(2000))")
        #expect(run.stdout.contains("camfa / raw"), "no table on stdout: \(run.stdout)")
        let files = try FileManager.default.contentsOfDirectory(atPath: results.path).filter { $0.hasPrefix("e2e-") && $0.hasSuffix(".json") }
        try #require(files.count == 1, "expected one e2e-*.json in \(results.path), found \(files)")
        let data = try Data(contentsOf: results.appendingPathComponent(files[0]))
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])

        let machine = try #require(json["machine"] as? [String: Any])
        #expect((machine["cores"] as? Int ?? 0) > 0)
        #expect(!(machine["cpuModel"] as? String ?? "").isEmpty)
        let parameters = try #require(json["parameters"] as? [String: Any])
        #expect(parameters["events"] as? Int == 10000)
        #expect(parameters["partitions"] as? Int == 4)
        #expect(parameters["enrichment"] is [String: Any])

        let raw = try #require(json["raw"] as? [String: Any])
        let camfa = try #require(json["camfa"] as? [String: Any])
        #expect(raw["messages"] as? Int == 10000, "the raw consumer read the whole backlog")
        #expect(camfa["events"] as? Int == 10000)
        let rawRate = try #require(raw["eventsPerSecond"] as? Double)
        let camfaRate = try #require(camfa["eventsPerSecond"] as? Double)
        #expect(rawRate > 0)
        #expect(camfaRate > 0)
        let ratio = try #require(json["ratio"] as? Double)
        #expect(abs(ratio - camfaRate / rawRate) <= 1e-9 * max(1, ratio))

        // --repartition: the copy of the backlog, every event decided through the key tasks.
        let repartitioned = try #require(json["repartitioned"] as? [String: Any])
        #expect((repartitioned["processed"] as? Int ?? 0) >= 10000)
        #expect((repartitioned["eventsPerSecond"] as? Double ?? 0) > 0)
        #expect(abs((repartitioned["ratioToCamfa"] as? Double ?? 0) - (repartitioned["eventsPerSecond"] as? Double ?? 0) / camfaRate) <= 1e-9)

        let latency = try #require(json["latency"] as? [String: Any])
        #expect((latency["samples"] as? Int ?? 0) > 0, "some events of the offered load triggered MFA")
        for name in ["published", "consumed"] {
            let p = try #require(latency[name] as? [String: Any])
            let p50 = try #require(p["p50Micros"] as? Int), p99 = try #require(p["p99Micros"] as? Int)
            let p999 = try #require(p["p999Micros"] as? Int), max = try #require(p["maxMicros"] as? Int)
            #expect(p50 <= p99 && p99 <= p999 && p999 <= max, "\(name): \(p)")
            #expect(p["count"] as? Int == latency["samples"] as? Int)
        }
        // The floor samples every event of its load (not only those that trigger MFA).
        let floor = try #require(latency["floor"] as? [String: Any])
        #expect((floor["count"] as? Int ?? 0) > (latency["samples"] as? Int ?? .max))
        #expect((floor["p50Micros"] as? Int ?? .max) <= (floor["p99Micros"] as? Int ?? 0))

        let memory = try #require(json["memory"] as? [String: Any])
        #expect((memory["peakRSSBytes"] as? Int ?? 0) > 0)
        #expect((memory["trackedUsers"] as? Int ?? 0) > 0)
        #expect((memory["trackedUsers"] as? Int ?? .max) <= 2000)
        #expect(memory["bytesPerTrackedUser"] is Double)
        #expect((memory["engineInProcessBytesPerUser"] as? Int ?? 0) > 0)
    }

    /// `camfa-bench checkpoint` restores the same state from the store and from the
    /// changelog the checkpoints would have written, and fails when they differ.
    @Test("a tiny checkpoint run restores equal states from the store and the changelog")
    func tinyCheckpointRun() throws {
        let results = try TemporaryDirectory("camfa-checkpoint-results")
        let run = try runCamfaBench(["checkpoint", "--users", "3000", "--changed", "0.2", "--results", results.path])
        #expect(run.status == 0, "camfa-bench checkpoint failed: \(run.stderr.suffix(2000))")
        #expect(run.stdout.contains("restore from the changelog") && !run.stdout.contains("DIFFERS"), "\(run.stdout)")
        let files = try FileManager.default.contentsOfDirectory(atPath: results.path).filter { $0.hasPrefix("checkpoint-") && $0.hasSuffix(".json") }
        let file = try #require(files.first, "no JSON result written")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: results.path + "/" + file))) as? [String: Any])
        #expect(object["users"] as? Int == 3000 && (object["changelog"] as? [String: Any])?["matchesTheStore"] as? Bool == true)
        #expect(((object["seconds"] as? [String: Any])?["restoreFromChangelog"] as? Double ?? 0) > 0)
    }
}
