import CAMFATestSupport
import Foundation
import Testing

/// Issue 23's measuring loop end to end through the binary: a labelled month
/// (`camfa simulate --labelled`), the policies (`camfa replay`), the score
/// (`camfa detection-report`). Seed 4 is none of the README's seeds (1 to 3).
@Suite struct DetectionBlackBoxTests {
    /// The report, and the evaluation errors in the decisions (a policy that errors on
    /// everyday events is broken even when the figures look right).
    static func score(policies: String, events: URL, labels: URL) throws -> (report: [String: Any], errors: [String: Int]) {
        let replay = try runCamfa(["replay", "--policies", policies, events.path])
        #expect(replay.status == 0, "\(replay.stderr)")
        var errors: [String: Int] = [:]
        for line in replay.stdout.split(separator: "\n") {
            let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            for d in o?["decisions"] as? [[String: Any]] ?? [] {
                for e in d["errors"] as? [String] ?? [] { errors[e, default: 0] += 1 }
            }
        }
        let decisions = events.deletingLastPathComponent().appendingPathComponent("decisions-\(UUID().uuidString.prefix(6)).jsonl")
        try Data(replay.stdout.utf8).write(to: decisions)
        let report = try runCamfa(["detection-report", "--labels", labels.path, "--mfa-events", decisions.path, "--format", "json"])
        #expect(report.status == 0, "\(report.stderr)")
        return (try #require(try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any]), errors)
    }

    @Test func theRecommendedSetChallengesTakeoversAndSparesEverydayLogins() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-detect-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let labels = dir.appendingPathComponent("labels.jsonl"), events = dir.appendingPathComponent("events.jsonl")
        let sim = try runCamfa(["simulate", "--labelled", labels.path, "--users", "1500", "--seed", "4"])
        #expect(sim.status == 0, "\(sim.stderr)")
        try Data(sim.stdout.utf8).write(to: events)

        let (recommended, errors) = try Self.score(policies: "policies/recommended", events: events, labels: labels)
        let examples = try Self.score(policies: "policies/examples", events: events, labels: labels).report
        // Without enrichment (no geo, no velocity) as with it: no policy errors on any login.
        #expect(errors.isEmpty, "\(errors)")
        let takeovers = recommended["takeoverLogins"] as? Int ?? 0
        #expect(takeovers >= 15, "the month has takeovers to catch: \(recommended)")
        #expect((recommended["takeoversChallengedPercent"] as? Double ?? 0) >= 90, "\(recommended)")
        #expect((recommended["legitimateChallengedPercent"] as? Double ?? 100) <= 2, "\(recommended)")
        // The scenario demos challenge every login from outside the office.
        #expect((examples["legitimateChallengedPercent"] as? Double ?? 0) >= 20, "\(examples)")
        #expect((examples["takeoversChallengedPercent"] as? Double ?? 0) == 100, "\(examples)")
    }
}
