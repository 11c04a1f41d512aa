import Foundation
import Testing
import CAMFATestSupport

/// The five DESIGN.md scenarios through `camfa replay`, each against its fixture of
/// events and expected decisions in policies/examples/fixtures.
@Suite struct ScenarioReplayTests {
    @Test(arguments: ["usual_location", "extranet", "attribute_routing", "ip_velocity", "session_change"])
    func scenario(_ name: String) throws {
        let fixtures = "policies/examples/fixtures/"
        let result = try runCamfa(["replay", "--policies", "policies/examples", fixtures + name + ".events.jsonl"])
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let expectedText = try String(contentsOf: packageRoot.appendingPathComponent(fixtures + name + ".expected.jsonl"), encoding: .utf8)
        let expected = expectedText.split(separator: "\n").map { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String] ?? []
        }
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == expected.count)
        for (i, line) in lines.enumerated() where i < expected.count {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(obj["line"] as? Int == i + 1)
            let decisions = try #require(obj["decisions"] as? [[String: Any]], "line \(i + 1): \(line)")
            #expect(Self.summarise(decisions) == expected[i], "\(name) line \(i + 1)")
        }
    }

    static func summarise(_ decisions: [[String: Any]]) -> [String] {
        decisions.map { d in
            let flow = d["flow"] as? String ?? "?"
            if d["suppressedByCooldown"] as? Bool == true { return "\(flow):cooldown" }
            let action = d["action"] as? String ?? "?"
            guard action == "mfa" else {
                if action == "allow" { return "\(flow):allow" }
                return "\(flow):\(action)"
            }
            let methods = (d["methods"] as? [String] ?? []).joined(separator: ",")
            let reason = (d["returns"] as? [String: Any])?["reason"] as? String
            return "\(flow):mfa:\(methods)" + (reason.map { ":" + $0 } ?? "")
        }
    }

    @Test func everyMFADecisionExplainsItself() throws {
        let result = try runCamfa(["replay", "--policies", "policies/examples", "policies/examples/fixtures/ip_velocity.events.jsonl"])
        let last = try #require(result.stdout.split(separator: "\n").last)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
        let decision = try #require((obj["decisions"] as? [[String: Any]])?.first)
        let fired = try #require((decision["firedPolicies"] as? [[String: Any]])?.first { $0["policy"] as? String == "ip_velocity" })
        #expect((fired["judgment"] as? String)?.contains("before.failures >= 6") == true)
        let failures = try #require((fired["statistics"] as? [String: Any])?["failures"] as? [String: Any])
        #expect(failures["before"] as? Int == 6)
        #expect(failures["current"] as? Int == 6)
        #expect((decision["challengeId"] as? String)?.count == 36)
    }

    @Test func brokenPolicyFailsValidateWithPositions() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try "policy: p\nfilter: event.behaviorType == 1 +\njudgment: \"true\"\n".write(to: dir.appendingPathComponent("p.yaml"), atomically: true, encoding: .utf8)
        let r = try runCamfa(["policy", "validate", dir.path])
        #expect(r.status != 0)
        let first = try #require(r.stderr.split(separator: "\n").first)
        #expect(first.hasPrefix(dir.appendingPathComponent("p.yaml").path + ":2:"))
        let ok = try runCamfa(["policy", "validate", "policies/examples"])
        #expect(ok.status == 0, "\(ok.stderr)")
    }

    @Test func invalidLinesAreReportedAndReplayContinues() throws {
        let input = """
        {"originalIdentity":"u1","requestDate":1767225600000,"appId":"portal","behaviorType":"login","behaviorResult":"success","ip":"10.20.1.1"}
        {"originalIdentity":"u1","requestDate":"yesterday"}
        {"originalIdentity":"u1","requestDate":1767225600001,"appId":"portal","behaviorType":"login","behaviorResult":"success","ip":"10.20.1.1"}
        """
        let r = try runCamfa(["replay", "--policies", "policies/examples", "-"], stdin: Data(input.utf8))
        #expect(r.status == 0)
        let lines = r.stdout.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.count == 3)
        let invalid = lines[1]?["invalid"] as? [String: Any]
        #expect(invalid?["field"] as? String == "requestDate")
        #expect(lines[2]?["decisions"] != nil)
    }

    /// Issue 23 item 5 (and issue 22's intake): with `--config` a replay passes every line
    /// through the daemon's intake, so an offline evaluation judges what the daemon would.
    /// A producer's own zone is dropped for camfa's (without --config it is kept, as the
    /// fixtures rely on), a user id over the configured limit is `invalid: tooLong`, and an
    /// event from the far future is `rejected: future`.
    @Test func replayWithAConfigurationRunsTheDaemonsIntake() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-replay-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("camfa.yaml")
        try """
        policies: \(packageRoot.appendingPathComponent("policies/examples").path)
        engine:
          maxIdentityBytes: 16
        enrichment:
          zones:
            intranet: [10.20.0.0/16]
        """.write(to: config, atomically: true, encoding: .utf8)
        let t: Int64 = 1_767_225_600_000
        let input = [
            #"{"appId":"portal","requestDate":\#(t),"ip":"203.0.113.9","originalIdentity":"kim","behaviorType":"login","behaviorResult":"success","networkZone":"vpn"}"#,
            #"{"appId":"portal","requestDate":\#(t),"ip":"10.20.1.1","originalIdentity":"an-id-longer-than-sixteen","behaviorType":"login","behaviorResult":"success"}"#,
            #"{"appId":"portal","requestDate":7258118400000,"ip":"10.20.1.1","originalIdentity":"lee","behaviorType":"login","behaviorResult":"success"}"#,
        ].joined(separator: "\n")
        func zone(_ line: [String: Any]?) -> String? {
            let decisions = line?["decisions"] as? [[String: Any]] ?? []
            let fired = decisions.flatMap { $0["firedPolicies"] as? [[String: Any]] ?? [] }
            return (fired.first { $0["policy"] as? String == "extranet" }?["returns"] as? [String: Any])?["zone"] as? String
        }
        let daemon = try runCamfa(["replay", "--config", config.path, "-"], stdin: Data(input.utf8))
        #expect(daemon.status == 0, "\(daemon.stderr)")
        let lines = daemon.stdout.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        try #require(lines.count == 3, "\(daemon.stdout)")
        #expect(zone(lines[0]) == "extranet", "\(lines[0] ?? [:])")
        let invalid = lines[1]?["invalid"] as? [String: Any]
        #expect(invalid?["code"] as? String == "tooLong" && invalid?["field"] as? String == "originalIdentity", "\(lines[1] ?? [:])")
        #expect((lines[2]?["rejected"] as? [String: Any])?["code"] as? String == "future", "\(lines[2] ?? [:])")

        let bench = try runCamfa(["replay", "--policies", "policies/examples", "-"], stdin: Data(input.utf8))
        let plain = bench.stdout.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(zone(plain.first ?? nil) == "vpn", "without --config the event's own fields count")
        #expect(plain.count == 3 && plain[1]?["decisions"] != nil, "the default limits (256 bytes) admit the id")
    }
}
