import Foundation
import Testing
import CAMFATestSupport

/// Issue 3's acceptance, black-box: `camfa broker`, `camfa run` and kcat as separate processes.
@Suite(.serialized) struct DaemonBlackBoxTests {
    static let fixtures = "policies/examples/fixtures/"

    /// Each fixture line's expected decisions → the MFA events the daemon must publish:
    /// (user, flow, methods), in input order. Cooldowns and allows publish nothing.
    static func expectedMFAEvents(_ name: String) throws -> [(user: String, flow: String, methods: [String])] {
        let events = try String(contentsOf: packageRoot.appendingPathComponent(fixtures + name + ".events.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        let expected = try String(contentsOf: packageRoot.appendingPathComponent(fixtures + name + ".expected.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        var out: [(String, String, [String])] = []
        for (e, x) in zip(events, expected) {
            let user = (try JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any])?["originalIdentity"] as? String ?? "?"
            for d in (try JSONSerialization.jsonObject(with: Data(x.utf8)) as? [String] ?? []) {
                let parts = d.split(separator: ":").map(String.init)
                if parts.count >= 3, parts[1] == "mfa" { out.append((user, parts[0], parts[2].split(separator: ",").map(String.init))) }
            }
        }
        return out
    }

    static func fixtureMessages(_ name: String) throws -> [(key: String, value: Data)] {
        try String(contentsOf: packageRoot.appendingPathComponent(fixtures + name + ".events.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { line in
                let user = (try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["originalIdentity"] as? String ?? ""
                return (user, Data(line.utf8))
            }
    }

    struct Published {
        var key: String?
        var id: String
        var subject: String
        var flow: String
        var methods: [String]
        var type: String
        var offset: Int
    }

    static func published(_ messages: [BlackBox.Message]) throws -> [Published] {
        try messages.map { m in
            let e = try #require(try JSONSerialization.jsonObject(with: m.value) as? [String: Any])
            let data = try #require(e["data"] as? [String: Any])
            let trigger = data["trigger"] as? [String: Any]
            return Published(key: m.key, id: e["id"] as? String ?? "", subject: e["subject"] as? String ?? "",
                             flow: data["flow"] as? String ?? "", methods: data["methods"] as? [String] ?? [],
                             type: e["type"] as? String ?? "", offset: trigger?["offset"] as? Int ?? -1)
        }
    }

    @Test(arguments: ["usual_location", "extranet", "attribute_routing", "ip_velocity", "session_change"])
    func scenarioPublishesExactlyTheExpectedMFAEvents(_ name: String) throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        try BlackBox.produce(broker.bootstrap, topic: "in.\(name)", try Self.fixtureMessages(name))
        let expected = try Self.expectedMFAEvents(name)
        #expect(!expected.isEmpty)
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: name, group: "bb-\(name)")
        let got = try Self.published(BlackBox.consume(broker.bootstrap, topic: "out.\(name)", atLeast: expected.count))
        #expect(daemon.stop() == 0, "\(daemon.log)")
        #expect(got.count == expected.count, "published: \(got.map { "\($0.subject) \($0.flow) \($0.methods)" })")
        for (g, x) in zip(got, expected) {
            #expect(g.key == x.user)
            #expect(g.subject == x.user)
            #expect(g.flow == x.flow)
            #expect(g.methods == x.methods)
            #expect(g.type == "authing.security.mfa")
            #expect(g.id.range(of: #"^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"#, options: .regularExpression) != nil)
        }
        #expect(Set(got.map(\.id)).count == got.count)
    }

    @Test func idsAreDeterministicAcrossIndependentRuns() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let name = "ip_velocity.again"
        try BlackBox.produce(broker.bootstrap, topic: "in.\(name)", try Self.fixtureMessages("ip_velocity"))
        let n = try Self.expectedMFAEvents("ip_velocity").count
        // Two groups, so the second run reads everything again from the beginning.
        let first = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: name, group: "bb-again-1")
        _ = try BlackBox.consume(broker.bootstrap, topic: "out.\(name)", atLeast: n)
        #expect(first.stop() == 0)
        let second = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: name, group: "bb-again-2")
        let all = try Self.published(BlackBox.consume(broker.bootstrap, topic: "out.\(name)", atLeast: 2 * n))
        #expect(second.stop() == 0)
        #expect(all.count == 2 * n)
        #expect(all.prefix(n).map(\.id) == all.suffix(n).map(\.id))
        #expect(all.prefix(n).map(\.offset) == all.suffix(n).map(\.offset))
    }

    @Test func badInputGoesToTheDeadLetterTopicAndTheDaemonGoesOn() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let valid = #"{"originalIdentity":"ok1","requestDate":1767225600000,"appId":"portal","behaviorType":"login","behaviorResult":"success","ip":"198.51.100.7"}"#
        let huge = #"{"originalIdentity":"big","requestDate":1767225600000,"custom":{"blob":""# + String(repeating: "x", count: 2 << 20) + #""}}"#
        let bad: [(String, Data, String)] = [
            ("a", Data("not json at all".utf8), "invalid: notJSON"),
            ("b", Data("[1,2,3]".utf8), "invalid: notAnObject"),
            ("c", Data(#"{"requestDate":1767225600000}"#.utf8), "invalid: missingField"),
            ("d", Data(#"{"originalIdentity":"u","requestDate":"yesterday"}"#.utf8), "invalid: wrongType"),
            ("e", Data([0x7B, 0x22, 0x6F, 0x72, 0xFF, 0xFE, 0x22, 0x3A, 0x31, 0x7D]), "invalid: invalidUTF8"),
            ("f", Data(huge.utf8), "too-large"),
            ("g", Data(), "empty"),
        ]
        try BlackBox.produce(broker.bootstrap, topic: "in.bad", bad.map { ($0.0, $0.1) } + [("ok1", Data(valid.utf8))])
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "bad", group: "bb-bad")
        let dead = try BlackBox.consume(broker.bootstrap, topic: "dlq.bad", atLeast: bad.count)
        let mfa = try BlackBox.consume(broker.bootstrap, topic: "out.bad", atLeast: 1, settle: 0.5)
        #expect(daemon.process.isRunning, "the daemon stopped on bad input:\n\(daemon.log)")
        #expect(daemon.stop() == 0)
        #expect(dead.count == bad.count)
        for (i, (key, value, reason)) in bad.enumerated() where i < dead.count {
            let d = dead[i]
            #expect(d.key == key)
            #expect(d.headers["camfa.reason"]?.hasPrefix(reason) == true, "\(key): \(d.headers)")
            #expect(d.headers["camfa.source.topic"] == "in.bad")
            #expect(d.headers["camfa.source.partition"] == "0")
            #expect(d.headers["camfa.source.offset"] == String(i))
            if i < 5 { #expect(d.value == value) }
            if key == "f" {
                #expect(d.headers["camfa.truncated"] == "true")
                #expect(d.headers["camfa.original.size"] == String(value.count))
                #expect(d.value == value.prefix(64 << 10))
            }
        }
        #expect(try Self.published(mfa).map(\.subject) == ["ok1"])
        // Dead letters are logged without the event's content or user.
        #expect(!daemon.log.contains("yesterday"))
        #expect(!daemon.log.contains("ok1"))
    }

    @Test func sigtermCommitsThePositionAndARestartContinuesFromIt() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let total = 8000
        let sim = try runCamfa(["simulate", "--events", String(total), "--users", "300", "--seed", "11", "--rate", "400"])
        let messages: [(key: String, value: Data)] = sim.stdout.split(separator: "\n").map { line in
            let user = (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["originalIdentity"] as? String ?? ""
            return (user, Data(line.utf8))
        }
        #expect(messages.count == total)
        let chunks = stride(from: 0, to: total, by: 500).map { Array(messages[$0..<min(total, $0 + 500)]) }
        // A restart keeps its state directory: the checkpoint, not the group offset, says where
        // to resume (the group offset is for lag monitoring).
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-sigterm-\(UUID().uuidString)").path
        let first = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "sigterm", group: "bb-sigterm", stateDir: state)
        // Let it join and start, then stop it while events are still arriving.
        try BlackBox.produce(broker.bootstrap, topic: "in.sigterm", chunks[0])
        _ = try BlackBox.consume(broker.bootstrap, topic: "out.sigterm", atLeast: 1, settle: 0)
        for chunk in chunks[1..<8] {
            try BlackBox.produce(broker.bootstrap, topic: "in.sigterm", chunk)
        }
        let started = Date()
        #expect(first.stop() == 0)
        #expect(Date().timeIntervalSince(started) < 10)
        for chunk in chunks[8...] {
            try BlackBox.produce(broker.bootstrap, topic: "in.sigterm", chunk)
        }
        let stopped = try #require(first.logLines("camfa pipeline stopped").first, "\(first.log)")
        let processed1 = Int(stopped["processed"] as? String ?? "") ?? -1
        let committed1 = Int((stopped["committed"] as? String ?? "").split(separator: ":").last ?? "") ?? -1
        #expect(processed1 > 0 && processed1 < total, "stopped after \(processed1) of \(total)")
        // Every event processed before the stop is committed, and nothing more.
        #expect(committed1 == processed1)

        let second = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "sigterm", group: "bb-sigterm", stateDir: state)
        let deadline = Date().addingTimeInterval(40)
        while Date() < deadline, !second.log.contains("partitions assigned") { Thread.sleep(forTimeInterval: 0.5) }
        Thread.sleep(forTimeInterval: 4)
        #expect(second.stop() == 0)
        let stopped2 = try #require(second.logLines("camfa pipeline stopped").first, "\(second.log)")
        let processed2 = Int(stopped2["processed"] as? String ?? "") ?? -1
        // The restart continues exactly where the first run's commit left off.
        let sum = processed1 + processed2
        #expect(sum == total, "first \(processed1), second \(processed2)")
        #expect(stopped2["committed"] as? String == "0:\(total)")
    }
}

@Suite struct SimulateToKafkaTests {
    @Test func simulateProducesTheRequestedEventsToKafka() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let r = try runCamfa(["simulate", "--bootstrap", broker.bootstrap, "--topic", "in.simulate", "--events", "300",
                              "--rate", "3000", "--seed", "5", "--users", "50"])
        #expect(r.status == 0, "\(r.stderr)")
        let got = try BlackBox.consume(broker.bootstrap, topic: "in.simulate", atLeast: 300, settle: 0.5)
        #expect(got.count == 300)
        // Keyed by user, and the same events (but for their times) as the stdout form.
        let stdout = try runCamfa(["simulate", "--events", "300", "--seed", "5", "--users", "50", "--rate", "3000"])
        let users = stdout.stdout.split(separator: "\n").map { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["originalIdentity"] as? String
        }
        #expect(got.map(\.key) == users)
    }
}
