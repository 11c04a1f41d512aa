import CAMFAKafka
import Foundation
import Testing
import CAMFATestSupport

/// Issue 24 item 2 with the real daemon and `camfa broker`: one IP logging twelve users into
/// twelve apps (the ip_velocity scenario), the users spread over an 8-partition input. With
/// `topics.repartition` the daemon publishes exactly the scenario's MFA events, as on one
/// partition; without it (the attack working) the partitions each count an eighth of the
/// address's apps and publish fewer.
@Suite(.serialized) struct RepartitionBlackBoxTests {
    /// Until `pipelines` poll loops have their partitions: events produced before would be
    /// read in partition order, not in the order they were produced.
    static func waitForAssignments(_ daemon: BlackBox.Daemon, pipelines: Int) throws {
        let deadline = Date().addingTimeInterval(30)
        while daemon.log.components(separatedBy: "\"message\":\"partitions assigned\"").count - 1 < pipelines, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
        }
        try #require(Date() < deadline, "no assignment: \(daemon.log.suffix(2000))")
    }

    /// The scenario's events one by one, each after the previous was read: the order the
    /// address's task sees is then the order of event time, as on one partition.
    static func trickle(_ bootstrap: String, topic: String) throws {
        for m in try DaemonBlackBoxTests.fixtureMessages("ip_velocity") {
            try BlackBox.produce(bootstrap, topic: topic, [m])
            Thread.sleep(forTimeInterval: 0.3)
        }
    }

    /// "user flow methods reason" of each published MFA event, sorted: the reason is the
    /// branch's, `ip-velocity` only when the address's statistic saw all its apps.
    static func summary(_ messages: [BlackBox.Message]) throws -> [String] {
        try messages.map { m in
            let e = try #require(try JSONSerialization.jsonObject(with: m.value) as? [String: Any])
            let data = try #require(e["data"] as? [String: Any])
            let reason = (data["returns"] as? [String: Any])?["reason"] as? String ?? "?"
            return "\(e["subject"] as? String ?? "?") \(data["flow"] as? String ?? "?") \((data["methods"] as? [String] ?? []).joined(separator: ",")) \(reason)"
        }.sorted()
    }

    /// The scenario's expected MFA events in the same form (fixtures: `flow:mfa:methods:reason`).
    static func expected() throws -> [String] {
        let dir = packageRoot.appendingPathComponent("policies/examples/fixtures")
        let events = try String(contentsOf: dir.appendingPathComponent("ip_velocity.events.jsonl"), encoding: .utf8).split(separator: "\n")
        let decisions = try String(contentsOf: dir.appendingPathComponent("ip_velocity.expected.jsonl"), encoding: .utf8).split(separator: "\n")
        var out: [String] = []
        for (e, x) in zip(events, decisions) {
            let user = (try JSONSerialization.jsonObject(with: Data(e.utf8)) as? [String: Any])?["originalIdentity"] as? String ?? "?"
            for d in (try JSONSerialization.jsonObject(with: Data(x.utf8)) as? [String] ?? []) {
                let parts = d.split(separator: ":").map(String.init)
                if parts.count == 4, parts[1] == "mfa" { out.append("\(user) \(parts[0]) \(parts[2]) \(parts[3])") }
            }
        }
        return out.sorted()
    }

    @Test func anAddressSpreadOverPartitionsIsCountedAsOne() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let expected = try Self.expected()
        #expect(expected.filter { $0.hasSuffix("ip-velocity") }.count == 2, "\(expected)")
        let users = try DaemonBlackBoxTests.fixtureMessages("ip_velocity").map(\.key)
        // kcat's partitioner, librdkafka's default.
        let partitions = Set(users.compactMap { KafkaPartitioner.consistentRandom.partition(key: Array($0.utf8), partitionCount: 8) })
        #expect(partitions.count >= 4, "the scenario's users land on \(partitions.count) of 8 partitions")

        // The attack working: no repartition topic, each partition counts on its own.
        let off = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "repart.off", group: "repart-off-\(UUID().uuidString)",
                                      kafkaProperties: ["fetch.wait.max.ms": "10"])
        try Self.waitForAssignments(off, pipelines: 1)
        try Self.trickle(broker.bootstrap, topic: "in.repart.off")
        let missed = try Self.summary(BlackBox.consume(broker.bootstrap, topic: "out.repart.off", atLeast: expected.count, timeout: 20))
        #expect(off.stop() == 0)
        #expect(missed.filter { $0.hasSuffix("ip-velocity") }.count < 2, "per partition: \(missed)")

        // The fix: the address's statistics in its key task.
        let on = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "repart", group: "repart-\(UUID().uuidString)",
                                     kafkaProperties: ["fetch.wait.max.ms": "10"], repartition: "keys.repart")
        try Self.waitForAssignments(on, pipelines: 2)
        try Self.trickle(broker.bootstrap, topic: "in.repart")
        let got = try BlackBox.consume(broker.bootstrap, topic: "out.repart", atLeast: expected.count, timeout: 60)
        #expect(on.stop() == 0, "\(on.log.suffix(3000))")
        let summary = try Self.summary(got)
        #expect(summary == expected, "published \(summary), expected \(expected)\n\(on.log.suffix(3000))")
        #expect(Set(try DaemonBlackBoxTests.published(got).map(\.id)).count == got.count)
    }

    static let scenarios = ["attribute_routing", "extranet", "ip_velocity", "session_change", "usual_location"]

    /// The five scenarios as one stream: each a day after the previous (past every window
    /// and cooldown of the examples), their users already distinct.
    static func combined() throws -> (events: [(key: String, value: Data)], expected: [String]) {
        let dir = packageRoot.appendingPathComponent("policies/examples/fixtures")
        var events: [(String, Data)] = [], expected: [String] = []
        for (day, name) in scenarios.enumerated() {
            let lines = try String(contentsOf: dir.appendingPathComponent("\(name).events.jsonl"), encoding: .utf8).split(separator: "\n")
            let decisions = try String(contentsOf: dir.appendingPathComponent("\(name).expected.jsonl"), encoding: .utf8).split(separator: "\n")
            for (line, x) in zip(lines, decisions) {
                var e = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                e["requestDate"] = (e["requestDate"] as? Int64 ?? 0) + Int64(day) * 86_400_000
                let user = e["originalIdentity"] as? String ?? "?"
                events.append((user, try JSONSerialization.data(withJSONObject: e)))
                for d in (try JSONSerialization.jsonObject(with: Data(x.utf8)) as? [String] ?? []) {
                    let parts = d.split(separator: ":").map(String.init)
                    if parts.count == 4, parts[1] == "mfa" { expected.append("\(user) \(parts[0]) \(parts[2]) \(parts[3])") }
                }
            }
        }
        return (events, expected.sorted())
    }

    /// Until no daemon's poll loops have logged an assignment or a revocation for `quiet`
    /// seconds, each having logged `pipelines` assignments: the group has settled.
    static func waitUntilSettled(_ daemons: [BlackBox.Daemon], pipelines: Int, quiet: Double = 4) throws {
        let deadline = Date().addingTimeInterval(90)
        var last = "", since = Date()
        while Date() < deadline {
            let marks = daemons.map { d in d.log.split(separator: "\n").filter { $0.contains("\"message\":\"partitions assigned\"") || $0.contains("\"message\":\"partitions revoked\"") } }
            let now = marks.map { $0.joined() }.joined(separator: "|")
            if now != last { (last, since) = (now, Date()) }
            let assigned = marks.allSatisfy { $0.filter { $0.contains("assigned") }.count >= pipelines }
            if assigned, Date().timeIntervalSince(since) >= quiet { return }
            Thread.sleep(forTimeInterval: 0.2)
        }
        Issue.record("the group did not settle: \(daemons.map { $0.log.suffix(1500) })")
    }

    /// Issue 24's acceptance, cross-partition exactness: the five scenarios on 16 partitions
    /// served by 3 daemons with their own state directories publish the same MFA events
    /// (user, flow, methods, reason) as on 1 partition served by 1 daemon, and as the
    /// fixtures say; the ip_velocity users are spread over several partitions.
    @Test func threeDaemonsOnSixteenPartitionsDecideAsOneDaemonOnOne() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let (events, expected) = try Self.combined()
        #expect(expected.count >= 10 && expected.contains { $0.hasSuffix("ip-velocity") }, "\(expected)")
        let velocityUsers = try DaemonBlackBoxTests.fixtureMessages("ip_velocity").map(\.key)
        let spread = Set(velocityUsers.compactMap { KafkaPartitioner.consistentRandom.partition(key: Array($0.utf8), partitionCount: 16) })
        #expect(spread.count >= 4, "the address's users land on \(spread.count) of 16 partitions")

        // The three daemons join (and their group settles) while the reference runs.
        let group = "combo-\(UUID().uuidString)"
        let daemons = try (0..<3).map { _ in
            try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "combo", group: group,
                                kafkaProperties: BlackBox.Daemon.steadyGroup.merging(["fetch.wait.max.ms": "10"]) { $1 },
                                repartition: "keys.combo")
        }
        defer { for d in daemons { _ = d.stop() } }

        // The reference: one partition, one daemon, everything at once.
        try BlackBox.produce(broker.bootstrap, topic: "in.combo1", events)
        let reference = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "combo1", group: "combo1-\(UUID().uuidString)")
        let referenced = try Self.summary(BlackBox.consume(broker.bootstrap, topic: "out.combo1", atLeast: expected.count, timeout: 60))
        #expect(reference.stop() == 0)
        #expect(referenced == expected, "one partition: \(referenced)")
        try Self.waitUntilSettled(daemons, pipelines: 2)
        for m in events {
            try BlackBox.produce(broker.bootstrap, topic: "in.combo", [m])
            Thread.sleep(forTimeInterval: 0.3)
        }
        let got = try BlackBox.consume(broker.bootstrap, topic: "out.combo", atLeast: expected.count, timeout: 60)
        let summary = try Self.summary(got)
        #expect(summary == referenced, "16 partitions, 3 daemons: \(summary)\nexpected \(referenced)\n\(daemons.map { $0.log.suffix(1500) })")
        #expect(Set(try DaemonBlackBoxTests.published(got).map(\.id)).count == got.count, "each MFA event once")
    }

    /// Logins for the recommended set: ten regular users (three logins each, own address and
    /// device), a stuffing run (seven users from one address, seconds apart) and a spraying
    /// run (six users failing from another).
    static func recommendedStream() -> [(key: String, value: Data)] {
        var out: [(String, Data)] = []
        var t: Int64 = 1_767_225_600_000
        func login(_ user: String, ip: String, device: String, result: String = "success") {
            t += 10_000
            let e = #"{"appId":"portal","requestDate":\#(t),"ip":"\#(ip)","originalIdentity":"\#(user)","behaviorType":"login","behaviorResult":"\#(result)","ua":"Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0","custom":{"deviceId":"\#(device)"}}"#
            out.append((user, Data(e.utf8)))
        }
        for round in 0..<3 { for u in 0..<10 { login("r\(u)", ip: "192.0.2.\(10 + u)", device: "d-r\(u)\(round == 2 && u == 3 ? "-new" : "")") } }
        for u in 0..<7 { login("s\(u)", ip: "198.51.100.66", device: "d-tool") }
        for u in 0..<6 { login("p\(u)", ip: "198.51.100.77", device: "d-spray", result: "failure") }
        login("p5", ip: "198.51.100.77", device: "d-spray")
        return out
    }

    /// An MFA event as far as the decision goes: user, flow, action, methods, returns and
    /// the explanation with every statistic's values; not the id or the coordinates, which
    /// name the partition.
    static func decisions(_ messages: [BlackBox.Message]) throws -> [String] {
        try messages.map { m in
            let e = try #require(try JSONSerialization.jsonObject(with: m.value) as? [String: Any])
            let data = try #require(e["data"] as? [String: Any])
            let kept: [String: Any] = ["subject": e["subject"] ?? "", "flow": data["flow"] ?? "", "action": data["action"] ?? "",
                                       "methods": data["methods"] ?? [], "returns": data["returns"] ?? [:], "explanation": data["explanation"] ?? []]
            return String(decoding: try JSONSerialization.data(withJSONObject: kept, options: [.sortedKeys]), as: UTF8.self)
        }.sorted()
    }

    /// The acceptance's other half: the recommended set (addresses, the risk population)
    /// decides the same on 16 partitions and 3 daemons as on 1 and 1, statistic values
    /// and scores included.
    @Test func theRecommendedSetDecidesTheSameOnSixteenPartitions() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let events = Self.recommendedStream()
        let policies = packageRoot.appendingPathComponent("policies/recommended").path
        // The three daemons join (and their group settles) while the reference runs.
        let group = "reco-\(UUID().uuidString)"
        let daemons = try (0..<3).map { _ in
            try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "reco", group: group,
                                kafkaProperties: BlackBox.Daemon.steadyGroup.merging(["fetch.wait.max.ms": "10"]) { $1 },
                                policies: policies, repartition: "keys.reco")
        }
        defer { for d in daemons { _ = d.stop() } }
        try BlackBox.produce(broker.bootstrap, topic: "in.reco1", events)
        let reference = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "reco1", group: "reco1-\(UUID().uuidString)", policies: policies)
        // Four challenges, all for the addresses: the stuffing run's fifth to seventh users
        // and the spraying run's one success. The regular users are not challenged (their
        // risk stays low in a stream this short), so the risk population through the key
        // tasks is compared in RepartitionEquivalenceTests, over a labelled month.
        let one = try Self.decisions(BlackBox.consume(broker.bootstrap, topic: "out.reco1", atLeast: 2, timeout: 60, settle: 4))
        #expect(reference.stop() == 0)
        #expect(one.contains { $0.contains("many-users-one-address") }, "the stuffing run is caught on one partition: \(one)")
        try Self.waitUntilSettled(daemons, pipelines: 2)
        for m in events {
            try BlackBox.produce(broker.bootstrap, topic: "in.reco", [m])
            Thread.sleep(forTimeInterval: 0.3)
        }
        let sixteen = try Self.decisions(BlackBox.consume(broker.bootstrap, topic: "out.reco", atLeast: one.count, timeout: 60, settle: 4))
        #expect(sixteen == one, "16 partitions, 3 daemons:\n\(sixteen.joined(separator: "\n"))\none partition:\n\(one.joined(separator: "\n"))")
    }

    /// Key tasks hand off like user tasks: an address's four apps are counted by one daemon,
    /// which stops; a daemon with an empty state directory takes over, restores the key
    /// tasks from `<changelog>.keys` (not by reading the repartition topic again), and the
    /// fifth app is the address's fifth.
    @Test func keyTasksRestoreFromTheirChangelogOnAnotherHost() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let scenario = try DaemonBlackBoxTests.fixtureMessages("ip_velocity")
        let group = "keyho-\(UUID().uuidString)"
        func daemon() throws -> BlackBox.Daemon {
            try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "keyho", group: group, kafkaProperties: ["fetch.wait.max.ms": "10"],
                                changelog: "changelog.keyho", repartition: "keys.keyho")
        }
        let first = try daemon()
        try Self.waitForAssignments(first, pipelines: 2)
        for m in scenario.prefix(4) {
            try BlackBox.produce(broker.bootstrap, topic: "in.keyho", [m])
            Thread.sleep(forTimeInterval: 0.3)
        }
        let before = try Self.summary(BlackBox.consume(broker.bootstrap, topic: "out.keyho", atLeast: 4, timeout: 30))
        #expect(before.count == 4 && before.allSatisfy { $0.hasSuffix("extranet") }, "\(before)")
        #expect(first.stop() == 0, "\(first.log.suffix(2000))")

        let second = try daemon()
        defer { _ = second.stop() }
        try Self.waitForAssignments(second, pipelines: 2)
        try BlackBox.produce(broker.bootstrap, topic: "in.keyho", [scenario[4]])
        let after = try Self.summary(BlackBox.consume(broker.bootstrap, topic: "out.keyho", atLeast: 5, timeout: 30))
        #expect(after.filter { $0.hasSuffix("ip-velocity") } == ["\(scenario[4].key) login_risk otp,sms ip-velocity"], "\(after)\n\(second.log.suffix(3000))")
        let restored = second.logLines("partition restored from its changelog").filter { $0["changelog"] as? String == "changelog.keyho.keys" }
        #expect(restored.contains { Int($0["records"] as? String ?? "") ?? 0 > 0 }, "the key tasks restored from their changelog: \(restored)")
    }

    /// Past `engine.maxParkedRecords` a user task reads on for its replies only and comes
    /// back for the rest: with room for 3 records and the whole scenario produced at once,
    /// every event is still decided, once, exactly as the fixture says (one partition, so
    /// the order is the input's).
    @Test func aFullPartitionReadsOnForItsRepliesAndComesBack() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let expected = try Self.expected()
        try BlackBox.produce(broker.bootstrap, topic: "in.skip", try DaemonBlackBoxTests.fixtureMessages("ip_velocity"))
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "skip", group: "skip-\(UUID().uuidString)",
                                         kafkaProperties: ["fetch.wait.max.ms": "10"], extraConfig: "engine:\n  maxParkedRecords: 3",
                                         repartition: "keys.skip")
        let got = try BlackBox.consume(broker.bootstrap, topic: "out.skip", atLeast: expected.count, timeout: 60)
        #expect(daemon.stop() == 0)
        #expect(try Self.summary(got) == expected, "\(daemon.log.suffix(3000))")
        #expect(!daemon.logLines("too many records wait for key tasks; reading on for their replies only").isEmpty, "the cap was reached")
    }
}
