import Foundation
import Testing
import CAMFATestSupport

/// Issue 22's hostile-input suite: one test per attack class, each tried the way an attacker
/// with ordinary access would (a UEBA producer, an API client), against the real binary,
/// `camfa broker`, kcat and confluent-kafka. `CAMFA_BINARY=<older build>` runs them against
/// a build from before the fixes, where each one fails.
@Suite(.serialized) struct HostileInputBlackBoxTests {
    static let topics = ["hostile.time", "hostile.trap", "hostile.expiry", "hostile.forged", "hostile.size", "hostile.enrich", "hostile.flood"]
    static let resultTopics = ["results.hostile.forged"]

    static var nowMs: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    static func login(_ user: String, at t: Int64, ip: String = "203.0.113.9", app: String = "portal") -> String {
        #"{"appId":"\#(app)","requestDate":\#(t),"ip":"\#(ip)","originalIdentity":"\#(user)","behaviorType":"login","behaviorResult":"success"}"#
    }

    static func subjects(_ messages: [BlackBox.Message]) -> [String] {
        messages.compactMap { (try? JSONSerialization.jsonObject(with: $0.value) as? [String: Any])?["subject"] as? String }
    }

    /// Attack: one event whose requestDate and CreateTime are in the year 2200 moved the
    /// partition's watermark, so every later real event was dead-lettered as `late` (and
    /// the sweep dropped the partition's users). The bound is camfa's own clock now.
    @Test func aFarFutureEventCannotMoveTheWatermark() throws {
        guard BlackBox.requireKcat(), BlackBox.requireConfluentKafka() else { return }
        let broker = try BlackBox.broker()
        let name = "hostile.time", now = Self.nowMs, y2200: Int64 = 7_258_118_400_000
        try BlackBox.produceRaw(broker.bootstrap, topic: "in.\(name)", [
            .init(key: "before", value: Self.login("before", at: now)),
            .init(key: "poison", value: Self.login("poison", at: y2200), timestamp: y2200),
            .init(key: "after", value: Self.login("after", at: now + 1_000)),
        ])
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: name, group: "bb-\(name)")
        let out = try BlackBox.consume(broker.bootstrap, topic: "out.\(name)", atLeast: 2, timeout: 30)
        let dead = try BlackBox.consume(broker.bootstrap, topic: "dlq.\(name)", atLeast: 1, timeout: 10, settle: 1)
        #expect(daemon.stop() == 0, "\(daemon.log.suffix(2000))")
        #expect(Self.subjects(out) == ["before", "after"], "the event after the poison was not judged")
        #expect(dead.map(\.key) == ["poison"])
        #expect(dead.first?.headers["camfa.reason"]?.hasPrefix("future:") == true, "\(dead.first?.headers ?? [:])")
    }

    /// Attack: a record whose CreateTime is near Int64.max trapped the daemon on checked
    /// arithmetic, and it died again on every restart (it resumes before that record).
    @Test func aCreateTimeNearInt64MaxDoesNotKillTheDaemon() throws {
        guard BlackBox.requireKcat(), BlackBox.requireConfluentKafka() else { return }
        let broker = try BlackBox.broker()
        let name = "hostile.trap", now = Self.nowMs
        try BlackBox.produceRaw(broker.bootstrap, topic: "in.\(name)", [
            .init(key: "trap", value: Self.login("trap", at: now), timestamp: Int64.max - 1_000),
            .init(key: "next", value: Self.login("next", at: now + 1)),
        ])
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: name, group: "bb-\(name)")
        let out = try BlackBox.consume(broker.bootstrap, topic: "out.\(name)", atLeast: 2, timeout: 30)
        #expect(daemon.process.isRunning, "the daemon died:\n\(daemon.log.suffix(2000))")
        #expect(daemon.stop() == 0)
        // The CreateTime is the producer's to choose and camfa does not read it: both judged.
        #expect(Self.subjects(out) == ["trap", "next"])
    }

    /// Attack: a challenge that expired unanswered made the status report
    /// `mfaVerified: true`: ignoring the MFA prompt for its expiry unlocked the user.
    @Test func anExpiredChallengeKeepsTheUserLockedUntilReleased() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let name = "hostile.expiry", port = HTTPBlackBoxTests.freePort()
        // The example policies with a 3-second expiry.
        let policies = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-expiry-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: packageRoot.appendingPathComponent("policies/examples"), to: policies)
        let flows = policies.appendingPathComponent("flows.yaml")
        try String(contentsOf: flows, encoding: .utf8).replacingOccurrences(of: "expiry: 10m", with: "expiry: 3s")
            .write(to: flows, atomically: true, encoding: .utf8)
        let admin = "camfa-test-admin-0123456789abcdef", results = "camfa-test-results-0123456789abcdef"
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: name, group: "bb-\(name)-\(UUID().uuidString)",
                                         kafkaProperties: ["fetch.wait.max.ms": "10"], extraConfig: """
            http:
              address: 127.0.0.1:\(port)
              apiKeys:
                - name: admin
                  hash: "sha256:\(try HTTPBlackBoxTests.sha256(admin))"
                  scopes: [evaluate, status, admin]
                - name: results
                  hash: "sha256:\(try HTTPBlackBoxTests.sha256(results))"
                  scopes: [results]
            """, policies: policies.path)
        defer { _ = daemon.stop() }
        let base = "http://127.0.0.1:\(port)"
        var ready = false
        for _ in 0..<160 where !ready {
            if let r = try? HTTPBlackBoxTests.request("GET", base + "/readyz", key: admin), r.status == 200 { ready = true } else {
                Thread.sleep(forTimeInterval: 0.25)
            }
        }
        try #require(ready, "readyz never answered 200; log:\n\(daemon.log.suffix(2000))")
        let login = try HTTPBlackBoxTests.request("POST", base + "/v1/evaluate", key: admin,
                                                  body: Data(Self.login("ivy", at: Self.nowMs, app: "hr").utf8))
        #expect(login.json["mfaRequired"] as? Bool == true, "\(String(decoding: login.body, as: UTF8.self))")
        let decision = (login.json["decisions"] as? [[String: Any]])?.first { $0["action"] as? String == "mfa" }
        let id = try #require(decision?["mfaEventId"] as? String)
        let methods = decision?["methods"] as? [String] ?? []
        Thread.sleep(forTimeInterval: 4)
        let status = try HTTPBlackBoxTests.request("GET", base + "/v1/users/ivy/mfa-status", key: admin)
        #expect(status.json["mfaVerified"] as? Bool == false, "ignoring the prompt until it expired unlocked the user: \(status.json)")
        #expect((status.json["expired"] as? [[String: Any]])?.first?["mfaEventId"] as? String == id)
        #expect((status.json["reason"] as? String)?.contains("expired") == true)
        // Too late to answer; a results-only key learns nothing beyond "unknown".
        let late = try HTTPBlackBoxTests.request("POST", base + "/v1/mfa-results", key: results, body: Data("""
            {"mfaEventId":"\(id)","user":"ivy","method":"\(methods.first ?? "otp")","result":"verified"}
            """.utf8))
        #expect(late.status == 404)
        #expect(try HTTPBlackBoxTests.request("GET", base + "/v1/users/ivy/mfa-status", key: admin).json["mfaVerified"] as? Bool == false)
        // An explicit release (admin) unlocks.
        let release = try HTTPBlackBoxTests.request("POST", base + "/v1/users/ivy/release", key: admin)
        #expect(release.status == 200, "\(String(decoding: release.body, as: UTF8.self))")
        #expect(release.json["released"] as? Int == 1)
        #expect(try HTTPBlackBoxTests.request("GET", base + "/v1/users/ivy/mfa-status", key: admin).json["mfaVerified"] as? Bool == true)
    }
}

extension HostileInputBlackBoxTests {
    /// Attack: any UEBA producer could write a record with `camfa.kind: mfa-result` and a
    /// challenge id to the input topic, and it cleared that user's challenge. camfa's
    /// control headers now count only under its MAC: the forged result, with the real id
    /// (read from the MFA topic, as any subscriber can), is a dead letter and the user stays
    /// locked; the same result through camfa (the result topic) clears it.
    @Test func aForgedControlRecordCannotClearAChallenge() throws {
        guard BlackBox.requireKcat(), BlackBox.requireConfluentKafka() else { return }
        let broker = try BlackBox.broker()
        let name = "hostile.forged", now = Self.nowMs
        try BlackBox.produce(broker.bootstrap, topic: "in.\(name)", [(key: "jack", value: Data(Self.login("jack", at: now).utf8))])
        let port = HTTPBlackBoxTests.freePort(), key = "camfa-test-status-0123456789abcdef"
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: name, group: "bb-\(name)", extraConfig: """
            http:
              address: 127.0.0.1:\(port)
              apiKeys:
                - name: status
                  hash: "sha256:\(try HTTPBlackBoxTests.sha256(key))"
                  scopes: [status]
            """)
        defer { _ = daemon.stop() }
        func verified() throws -> Bool? {
            try HTTPBlackBoxTests.request("GET", "http://127.0.0.1:\(port)/v1/users/jack/mfa-status", key: key).json["mfaVerified"] as? Bool
        }
        let challenge = try #require(try BlackBox.consume(broker.bootstrap, topic: "out.\(name)", atLeast: 1, timeout: 30, settle: 0).first)
        let event = try #require(try JSONSerialization.jsonObject(with: challenge.value) as? [String: Any])
        let id = try #require(event["id"] as? String)
        let method = ((event["data"] as? [String: Any])?["methods"] as? [String])?.first ?? "otp"
        let result = #"{"mfaEventId":"\#(id)","user":"jack","method":"\#(method)","result":"verified","time":\#(now + 1000)}"#
        // The forgery: camfa's own header names, with and without a made-up MAC.
        try BlackBox.produceRaw(broker.bootstrap, topic: "in.\(name)", [
            .init(key: "jack", value: result, headers: ["camfa.kind": "mfa-result"]),
            .init(key: "jack", value: result, headers: ["camfa.kind": "mfa-result", "camfa.mac": String(repeating: "0", count: 64)]),
        ])
        let forged = try BlackBox.consume(broker.bootstrap, topic: "dlq.\(name)", atLeast: 2, timeout: 30, settle: 1)
        #expect(forged.count == 2)
        #expect(try verified() == false, "the forged result cleared the challenge")
        // An API-mode event, to run the http flows with no API key.
        try BlackBox.produceRaw(broker.bootstrap, topic: "in.\(name)", [
            .init(key: "jack", value: Self.login("jack", at: now + 2000), headers: ["camfa.trigger": "http"]),
        ])
        let dead = try BlackBox.consume(broker.bootstrap, topic: "dlq.\(name)", atLeast: 3, timeout: 30, settle: 1)
        #expect(dead.count == 3)
        for d in dead { #expect(d.headers["camfa.reason"]?.hasPrefix("forged-control-record") == true, "\(d.headers)") }
        // A genuine result, through the result topic (camfa signs what it forwards), clears it.
        try BlackBox.produce(broker.bootstrap, topic: "results.\(name)", [(key: "jack", value: Data(result.utf8))])
        var cleared = false
        for _ in 0..<120 where !cleared {
            cleared = (try? verified()) == true
            if !cleared { Thread.sleep(forTimeInterval: 0.25) }
        }
        #expect(cleared, "the genuine result did not clear the challenge; log:\n\(daemon.log.suffix(2000))")
        // Dead letters are logged without the user (logging.personalData is false by default).
        #expect(daemon.logLines("dead letter").count == 3)
        #expect(!daemon.log.contains("jack"))
    }
}

extension HostileInputBlackBoxTests {
    /// Attack: an `originalIdentity` of a few hundred KB that triggers MFA made an MFA event
    /// larger than the producer's limit; its send was retried forever and the partition
    /// stalled. The identity is bounded at intake now (engine.maxIdentityBytes), and an
    /// output the broker refuses for good is dead-lettered instead of retried (shown with a
    /// producer limit lowered so that an ordinary MFA event exceeds it).
    @Test func oversizedInputCannotStallThePartition() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let name = "hostile.size", now = Self.nowMs
        let huge = String(repeating: "u", count: 300 << 10)
        try BlackBox.produce(broker.bootstrap, topic: "in.\(name)", [
            (key: "huge", value: Data(Self.login(huge, at: now).utf8)),
            (key: "long-custom", value: Data(#"{"originalIdentity":"lc","requestDate":\#(now),"deviceId":"\#(String(repeating: "d", count: 5000))"}"#.utf8)),
            (key: "after", value: Data(Self.login("after", at: now + 1).utf8)),
        ])
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: name, group: "bb-\(name)")
        let out = try BlackBox.consume(broker.bootstrap, topic: "out.\(name)", atLeast: 1, timeout: 30)
        let dead = try BlackBox.consume(broker.bootstrap, topic: "dlq.\(name)", atLeast: 2, timeout: 10, settle: 1)
        #expect(daemon.stop() == 0)
        #expect(Self.subjects(out) == ["after"])
        #expect(dead.map(\.key) == ["huge", "long-custom"])
        #expect(dead.first?.headers["camfa.reason"]?.hasPrefix("invalid: tooLong: originalIdentity: ") == true, "\(dead.first?.headers ?? [:])")
        #expect(dead.last?.headers["camfa.reason"]?.hasPrefix("invalid: tooLong: custom.deviceId: ") == true, "\(dead.last?.headers ?? [:])")

        // A producer limit below an MFA event's size: each MFA event is refused for good.
        // It is dead-lettered (reason undeliverable, pointing at the input), and the events
        // after it are still judged.
        let group = "bb-\(name)-limit"
        try BlackBox.produce(broker.bootstrap, topic: "in.\(name)", [
            (key: "big1", value: Data(Self.login("big1-" + String(repeating: "x", count: 240), at: now + 2).utf8)),
            (key: "big2", value: Data(Self.login("big2-" + String(repeating: "y", count: 240), at: now + 3).utf8)),
        ])
        let limited = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: name, group: group,
                                          kafkaProperties: ["message.max.bytes": "1000"])
        let undeliverable = try BlackBox.consume(broker.bootstrap, topic: "dlq.\(name)", atLeast: 4, timeout: 30, settle: 1)
            .filter { $0.headers["camfa.reason"]?.hasPrefix("undeliverable") == true }
        #expect(limited.process.isRunning, "\(limited.log.suffix(2000))")
        #expect(limited.stop() == 0)
        #expect(undeliverable.count >= 2, "dead letters: \(undeliverable.map(\.headers))")
        #expect(undeliverable.allSatisfy { $0.headers["camfa.output.topic"] == "out.\(name)" })
        #expect(undeliverable.allSatisfy { $0.headers["camfa.reason"]?.contains("MSG_SIZE_TOO_LARGE") == true })
    }
}

extension HostileInputBlackBoxTests {
    /// Attack: a producer could send its own enrichment (`networkZone`, `geo`, `userAgent`)
    /// and have policies believe it: here it claims the VPN zone from an outside address.
    /// Without `enrichment.trustProducer` camfa drops them and resolves the zone itself.
    @Test func aProducerCannotSupplyItsOwnEnrichment() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let name = "hostile.enrich", now = Self.nowMs
        let forged = #"{"appId":"portal","requestDate":\#(now),"ip":"203.0.113.9","originalIdentity":"kim","behaviorType":"login","behaviorResult":"success","networkZone":"vpn","geo":{"latitude":48.85,"longitude":2.35}}"#
        try BlackBox.produce(broker.bootstrap, topic: "in.\(name)", [(key: "kim", value: Data(forged.utf8))])
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: name, group: "bb-\(name)")
        let out = try BlackBox.consume(broker.bootstrap, topic: "out.\(name)", atLeast: 1, timeout: 30)
        #expect(daemon.stop() == 0)
        let event = try #require(try out.first.flatMap { try JSONSerialization.jsonObject(with: $0.value) as? [String: Any] })
        let data = try #require(event["data"] as? [String: Any])
        // The extranet policy returns the zone it saw: camfa's (none for this address).
        let extranet = (data["explanation"] as? [[String: Any]])?.first { $0["policy"] as? String == "extranet" }
        #expect((extranet?["returns"] as? [String: Any])?["zone"] as? String == "extranet", "\(data)")
    }
}

extension HostileInputBlackBoxTests {
    /// Attack: every distinct user id or IP a producer sends became a key held for the
    /// user retention (30 days), so a flood of made-up ones grew the state until the host
    /// ran out of memory. Now each keyspace and the users of a partition are capped: the
    /// least recently updated go, a user holding a challenge never does.
    @Test func aFloodOfDistinctKeysIsCappedAndCannotEvictALock() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let name = "hostile.flood", port = HTTPBlackBoxTests.freePort(), now = Self.nowMs
        let admin = "camfa-test-admin-0123456789abcdef"
        var records = [(key: "victim", value: Data(Self.login("victim", at: now, app: "hr").utf8))]
        for i in 0..<3_000 {
            records.append((key: "flood-\(i)", value: Data(Self.login("flood-\(i)", at: now + Int64(i), ip: "10.20.\(i / 256).\(i % 256)").utf8)))
        }
        try BlackBox.produce(broker.bootstrap, topic: "in.\(name)", records)
        // An older build (CAMFA_BINARY) knows no caps: it runs with its unbounded state.
        let caps = BlackBox.otherBinary ? "" : "engine:\n  maxUsers: 64\n  maxKeysPerKeyspace: 64\n"
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: name, group: "bb-\(name)-\(UUID().uuidString)", extraConfig: caps + """
            http:
              address: 127.0.0.1:\(port)
              apiKeys:
                - name: admin
                  hash: "sha256:\(try HTTPBlackBoxTests.sha256(admin))"
                  scopes: [status, admin]
            """)
        defer { _ = daemon.stop() }
        let base = "http://127.0.0.1:\(port)"
        // Until all 3001 records are processed (the counter is flushed per batch).
        var metrics = ""
        for _ in 0..<240 {
            if let r = try? HTTPBlackBoxTests.request("GET", base + "/metrics", key: admin), r.status == 200 {
                metrics = String(decoding: r.body, as: UTF8.self)
                if Self.metric(metrics, "camfa_events_processed_total") == 3_001 { break }
            }
            Thread.sleep(forTimeInterval: 0.25)
        }
        #expect(Self.metric(metrics, "camfa_events_processed_total") == 3_001, "log:\n\(daemon.log.suffix(2000))")
        // Sampled once a second: wait for the sample after the last batch.
        Thread.sleep(forTimeInterval: 2.5)
        metrics = String(decoding: try HTTPBlackBoxTests.request("GET", base + "/metrics", key: admin).body, as: UTF8.self)
        let evictedUsers = Self.metric(metrics, #"camfa_keys_evicted_total{keyspace="users"}"#) ?? 0
        #expect(evictedUsers > 2_000, "\(metrics)")
        // Per partition: at most the cap per keyspace and for users.
        let live = metrics.split(separator: "\n").filter { $0.hasPrefix("camfa_live_keys{") }
        #expect(!live.isEmpty && live.allSatisfy { Double($0.split(separator: " ").last ?? "") ?? .infinity <= 64 * 8 }, "\(live)")
        let status = try HTTPBlackBoxTests.request("GET", base + "/v1/users/victim/mfa-status", key: admin)
        #expect(status.json["mfaVerified"] as? Bool == false, "the flood unlocked the victim: \(status.json)")
        #expect(daemon.log.contains("live-key cap reached"))
        #expect(daemon.process.isRunning)
    }

    /// A metric's value in a Prometheus scrape: the first line starting with `name` + " ".
    static func metric(_ scrape: String, _ name: String) -> Double? {
        for line in scrape.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1).split(separator: " ").first ?? "")
        }
        return nil
    }
}
