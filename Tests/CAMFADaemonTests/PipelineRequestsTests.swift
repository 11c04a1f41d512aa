import CAMFACore
import CAMFAKafka
import CAMFAPolicyFiles
import Foundation
import Testing

@testable import CAMFADaemon
import CAMFATestSupport

/// API mode, the user status and MFA results against a real `Pipeline` and
/// `ResultForwarder` on an in-process mock cluster, with the example policies. One cluster,
/// pipeline and forwarder serve the whole suite (the first group join costs ~3 s); each
/// test uses its own user and IP, so tests do not see each other's state.
@Suite struct PipelineRequestsTests {
    let h = Harness.shared

    /// A login from `ip` (inside the office range, so only the IP-velocity policy can
    /// hit) to `app`, stamped now.
    func login(_ user: String, app: String, ip: String, at t: Int64 = Harness.now()) -> [UInt8] {
        Array(#"{"originalIdentity":"\#(user)","appId":"\#(app)","ip":"\#(ip)","behaviorType":"login","behaviorResult":"success","requestDate":\#(t)}"#.utf8)
    }

    @Test func aBurstBuiltOverKafkaIsSeenByEvaluate() async throws {
        let user = "u-\(UUID().uuidString.prefix(8))", ip = "10.20.7.\(Int.random(in: 1...250))"
        let before = h.pipeline.counters.processed
        for i in 1...4 { try h.produceInput(key: user, value: login(user, app: "app\(i)", ip: ip)) }
        try await h.waitFor("4 Kafka events processed") { h.pipeline.counters.processed >= before + 4 }
        let e = try await h.pipeline.evaluate(eventJSON: login(user, app: "app5", ip: ip), flow: nil, timeout: 10)
        #expect(e.decisions.map(\.flow) == ["api_login"])
        let d = try #require(e.decisions.first)
        #expect(d.action == .mfa)
        #expect(d.firedPolicies.map(\.policy) == ["ip_velocity"])
        #expect(d.challengeId != nil && !d.suppressedByCooldown)
        #expect(e.coordinates.topic == h.input)
        // The user is now locked with that challenge; a verified result unlocks them.
        let locked = try await h.pipeline.mfaStatus(user: user, timeout: 10)
        #expect(!locked.mfaVerified)
        #expect(locked.pending.map(\.id) == [d.challengeId!])
        #expect(locked.pending.first?.methods == [.otp, .sms])
        #expect(locked.failMode == h.set.flows.first { $0.name == "api_login" }!.failMode)
        let at = Harness.now()
        let result = #"{"mfaEventId":"\#(d.challengeId!)","user":"\#(user)","method":"otp","result":"verified","time":\#(at)}"#
        let outcome = try await h.pipeline.submitMFAResult(json: Array(result.utf8), timeout: 10)
        #expect(outcome.cleared)
        #expect(outcome.result.outcome == .verified)
        let unlocked = try await h.pipeline.mfaStatus(user: user, timeout: 10)
        #expect(unlocked.mfaVerified)
        // camfa dates a result by its own clock when it receives it (the caller's time is
        // never believed), a millisecond or so after `at`.
        #expect((at...Harness.now()).contains(unlocked.lastVerified ?? 0), "\(String(describing: unlocked.lastVerified)) vs \(at)")
        // Delivered again (at least once): accepted, nothing more to clear.
        let again = try await h.pipeline.submitMFAResult(json: Array(result.utf8), timeout: 10)
        #expect(!again.cleared)
    }

    /// Issue 25 item 5: before, a deny in event-flow mode published nothing (subscribers
    /// let the session through) and a cleared lock published nothing (subscribers holding
    /// the session never learnt). Both are MFA events now, valid against the schema.
    @Test func aDenyAndAClearedLockArePublishedAsMFAEvents() async throws {
        let user = "u-\(UUID().uuidString.prefix(8))", ip = "10.20.11.\(Int.random(in: 1...250))"
        // Four apps from one address, then the finance app: internal_apps denies (ip_velocity).
        for i in 1...4 { try h.produceInput(key: user, value: login(user, app: "app\(i)", ip: ip)) }
        try h.produceInput(key: user, value: login(user, app: "finance-app", ip: ip))
        let deny = try h.read(h.output) { $0.key == user && $0.value.contains(#""action":"deny""#) }
        // A challenge (API mode, a sixth app), verified: its lock is cleared.
        let e = try await h.pipeline.evaluate(eventJSON: login(user, app: "app6", ip: ip), flow: nil, timeout: 10)
        let id = try #require(e.decisions.first { $0.issuesChallenge }?.challengeId)
        let mfa = try h.read(h.output) { $0.value.contains(#""id":"\#(id)""#) }
        let result = #"{"mfaEventId":"\#(id)","user":"\#(user)","method":"otp","result":"verified","time":\#(Harness.now())}"#
        #expect(try await h.pipeline.submitMFAResult(json: Array(result.utf8), timeout: 10).cleared)
        let cleared = try h.read(h.output) { $0.key == user && $0.value.contains(#""action":"cleared""#) }
        #expect(cleared.value.contains(#""challengeId":"\#(id)""#) && cleared.value.contains(#""clearedBy":"verified""#))
        #expect(cleared.value.contains(#""methods":["otp"]"#))
        var ids = Set<String>()
        for m in [deny, mfa, cleared] {
            let data = try #require(m.value.firstMatch(of: /"id":"([0-9a-f-]{36})"/)?.1)
            ids.insert(String(data))
        }
        #expect(ids.count == 3, "each event has an id of its own")
        // An operator's release of a held challenge is a cleared event too.
        let again = try await h.pipeline.evaluate(eventJSON: login(user, app: "app7", ip: ip), flow: nil, timeout: 10)
        let held = try #require(again.decisions.first { $0.issuesChallenge }?.challengeId)
        #expect(try await h.pipeline.releaseUser(user: user, timeout: 10).released == 1)
        let released = try h.read(h.output) { $0.value.contains(#""clearedBy":"release""#) && $0.value.contains(held) }
        try Self.validate([deny.value, mfa.value, cleared.value, released.value])
    }

    /// Each MFA event against schemas/mfa-event.schema.json (Python's jsonschema: skipped
    /// without it, a failure under CI=true).
    static func validate(_ events: [String]) throws {
        let script = """
            import json, sys, jsonschema
            v = jsonschema.Draft202012Validator(json.load(open(sys.argv[1])))
            for line in sys.stdin.read().split("\\n"):
                if line:
                    errors = [e.message for e in v.iter_errors(json.loads(line))]
                    print("ok" if not errors else "; ".join(errors))
            """
        guard let r = try runTool("python3", ["-c", script, packageRoot.appendingPathComponent("schemas/mfa-event.schema.json").path],
                                  stdin: Data(events.joined(separator: "\n").utf8)), r.status == 0 || !r.stderr.contains("No module") else {
            #expect(!isCI, "python3 with jsonschema is needed to validate MFA events")
            return
        }
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == events.count)
        for (line, event) in zip(lines, events) { #expect(line == "ok", "\(line): \(event)") }
    }

    @Test func aBurstBuiltByEvaluateIsSeenByKafkaEvents() async throws {
        let user = "u-\(UUID().uuidString.prefix(8))", ip = "10.20.8.\(Int.random(in: 1...250))"
        for i in 1...4 {
            let e = try await h.pipeline.evaluate(eventJSON: login(user, app: "app\(i)", ip: ip), flow: "api_login", timeout: 10)
            #expect(e.decisions.map(\.action) == [.allow])
        }
        try h.produceInput(key: user, value: login(user, app: "app5", ip: ip))
        let mfa = try h.read(h.output) { $0.key == user }
        let envelope = try JSONParser.parse(Array(mfa.value.utf8))
        guard case .map(let m) = envelope, case .map(let data)? = m[string: "data"] else {
            Issue.record("not an MFA event: \(mfa.value)")
            return
        }
        #expect(data[string: "flow"].map { $0.isIdentical(to: .string("login_risk")) } == true)
        guard case .list(let explanation)? = data[string: "explanation"], case .map(let first)? = explanation.first else {
            Issue.record("no explanation")
            return
        }
        #expect(first[string: "policy"].map { $0.isIdentical(to: .string("ip_velocity")) } == true)
    }

    @Test func statusOfAnUnknownUserIsVerified() async throws {
        let s = try await h.pipeline.mfaStatus(user: "nobody-\(UUID().uuidString)", timeout: 10)
        #expect(s.mfaVerified)
        #expect(s.lastVerified == nil)
        #expect(s.failMode == .open)
    }

    @Test func invalidRequestsAreRefusedOnTheCallersSide() async throws {
        await #expect(throws: PipelineRequestError.self) {
            _ = try await h.pipeline.evaluate(eventJSON: Array(#"{"appId":"a","requestDate":1}"#.utf8), flow: nil, timeout: 5)
        }
        do {
            _ = try await h.pipeline.evaluate(eventJSON: login("x", app: "a", ip: "10.20.0.1"), flow: "login_risk", timeout: 5)
            Issue.record("a ueba flow was accepted for API mode")
        } catch {
            #expect(error.code == .unknownFlow)
        }
        do {
            _ = try await h.pipeline.submitMFAResult(json: Array(#"{"mfaEventId":"x","user":"u","method":"pigeon","result":"verified"}"#.utf8), timeout: 5)
            Issue.record("an unknown method was accepted")
        } catch {
            #expect(error.code == .invalid)
            #expect(error.field == "method")
        }
    }

    @Test func aResultForAnUnknownChallengeIsRejectedAndDeadLettered() async throws {
        let user = "u-\(UUID().uuidString.prefix(8))", id = UUID().uuidString
        let json = #"{"mfaEventId":"\#(id)","user":"\#(user)","method":"sms","result":"failed"}"#
        do {
            _ = try await h.pipeline.submitMFAResult(json: Array(json.utf8), timeout: 10)
            Issue.record("a result for an unknown challenge was accepted")
        } catch {
            #expect(error.code == .unknownChallenge)
        }
        let dead = try h.read(h.deadLetter) { $0.value.contains(id) }
        #expect(dead.header("camfa.reason")?.hasPrefix("unknown-challenge") == true)
        #expect(dead.header("camfa.source.topic") == h.input)
    }

    @Test func resultsFromTheResultTopicClearChallengesAndInvalidOnesAreDeadLettered() async throws {
        let user = "u-\(UUID().uuidString.prefix(8))", ip = "10.20.9.\(Int.random(in: 1...250))"
        var challenge: Decision?
        for i in 1...5 {
            let e = try await h.pipeline.evaluate(eventJSON: login(user, app: "app\(i)", ip: ip), flow: nil, timeout: 10)
            challenge = e.decisions.first { $0.issuesChallenge } ?? challenge
        }
        let id = try #require(challenge?.challengeId)
        #expect(try await h.pipeline.mfaStatus(user: user, timeout: 10).pending.map(\.id) == [id])
        // No time: the broker timestamp stands in.
        try h.produce(h.results, key: user, value: #"{"mfaEventId":"\#(id)","user":"\#(user)","method":"otp","result":"verified"}"#)
        try await h.waitFor("the forwarded result cleared the challenge") {
            (try? await h.pipeline.mfaStatus(user: user, timeout: 5).mfaVerified) == true
        }
        // The forwarder commits its position once the forwarded copy is acknowledged.
        try await h.waitFor("the forwarder's committed offset") { ((try? h.committedResultsOffset()) ?? 0) >= 1 }
        let marker = UUID().uuidString
        try h.produce(h.results, key: user, value: #"{"mfaEventId":"\#(marker)","user":"\#(user)","method":"otp","result":"maybe"}"#)
        let dead = try h.read(h.deadLetter) { $0.value.contains(marker) }
        #expect(dead.header("camfa.reason")?.hasPrefix("invalid: result:") == true)
        #expect(dead.header("camfa.source.topic") == h.results)
    }

    /// Attack (issue 22): the submitter's `time` dated the result, so a result backdated to
    /// before the expiry answered an expired challenge. camfa's clock dates it now: a time
    /// an hour ahead is not "future" but simply ignored.
    @Test func aSubmittersTimeIsNotBelieved() async throws {
        let user = "u-\(UUID().uuidString.prefix(8))", future = Harness.now() + 3_600_000
        let json = #"{"mfaEventId":"x","user":"\#(user)","method":"sms","result":"failed","time":\#(future)}"#
        do {
            _ = try await h.pipeline.submitMFAResult(json: Array(json.utf8), timeout: 10)
            Issue.record("a result for an unknown challenge was accepted")
        } catch {
            #expect(error.code == .unknownChallenge, "\(error)")
        }
        let before = Harness.now()
        let stamped = try MFAResult.decode(json: Array(#"{"mfaEventId":"x","user":"u","method":"sms","result":"verified","time":5}"#.utf8),
                                           receivedAt: before)
        #expect(stamped.time == before)
    }

    @Test func aRequestPastItsDeadlineTimesOutAndIsStillProcessed() async throws {
        let user = "u-\(UUID().uuidString.prefix(8))"
        let before = h.pipeline.counters.processed
        do {
            // A round trip through the broker takes far longer than a microsecond.
            _ = try await h.pipeline.evaluate(eventJSON: login(user, app: "a", ip: "10.20.0.9"), flow: nil, timeout: 1e-6)
            Issue.record("answered within a microsecond")
        } catch {
            #expect(error.code == .timeout)
        }
        try await h.waitFor("the timed-out event processed anyway") { h.pipeline.counters.processed > before }
    }
}

/// A second group on its own input topic, where a plain consumer holds some partitions:
/// requests for users of those partitions are answered `not-owned`, the rest normally.
@Suite struct NotOwnedTests {
    @Test func requestsForAnotherMembersPartitionAreNotOwned() async throws {
        let h = Harness.shared
        let topic = "in2.\(UUID().uuidString.prefix(6))", group = "g2-\(UUID().uuidString.prefix(6))"
        try h.cluster.createTopic(topic, partitions: 4)
        let other = OtherMember(bootstrap: h.cluster.bootstrapServers, topic: topic, group: group)
        defer { other.stop() }
        try await h.waitFor("the other member's assignment") { other.held.count == 4 }
        var c = h.configuration
        c.topics.input = topic
        c.kafka.groupId = group
        c.stateDir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-notowned-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: c.stateDir, withIntermediateDirectories: true)
        let pipeline = Pipeline(options: Pipeline.Options(configuration: c, policySet: h.set, enrichment: nil, secret: testSecret), logger: .init(label: "test"))
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try? pipeline.run()
            done.signal()
        }
        defer {
            pipeline.requestStop()
            done.wait()
        }
        // A join into a group with a member takes the mock broker several rebalance rounds,
        // which stretch when the whole suite shares two cores.
        try await h.waitFor("the partitions split between the members", seconds: 45) {
            let held = other.held
            return !held.isEmpty && held.count < 4 && pipeline.health.snapshot.ready
        }
        let held = other.held
        let partitioner = try #require(KafkaPartitioner(property: nil))
        let users = (0..<40).map { "user-\($0)" }
        let theirs = try #require(users.first { held.contains(partitioner.partition(key: Array($0.utf8), partitionCount: 4)!) })
        let ours = try #require(users.first { !held.contains(partitioner.partition(key: Array($0.utf8), partitionCount: 4)!) })
        // Cooperative rebalancing revokes first and assigns in a second round.
        try await h.waitFor("the pipeline owns the other partitions") {
            (try? await pipeline.mfaStatus(user: ours, timeout: 5).mfaVerified) == true
        }
        do {
            _ = try await pipeline.mfaStatus(user: theirs, timeout: 10)
            Issue.record("status answered for another member's user")
        } catch {
            #expect(error.code == .notOwned)
        }
        let event = #"{"originalIdentity":"\#(theirs)","appId":"a","ip":"10.20.0.1","behaviorType":"login","behaviorResult":"success","requestDate":\#(Harness.now())}"#
        do {
            _ = try await pipeline.evaluate(eventJSON: Array(event.utf8), flow: nil, timeout: 10)
            Issue.record("evaluated on another member's partition")
        } catch {
            #expect(error.code == .notOwned)
        }
        #expect(other.held == held)
    }
}

/// A plain group member polling on its own thread; `held` is its current assignment.
final class OtherMember: @unchecked Sendable {
    private let lock = NSLock()
    private var partitions: Set<Int32> = []
    private let stopSignal = StopSignal()
    private let finished = DispatchSemaphore(value: 0)

    init(bootstrap: String, topic: String, group: String) {
        Thread.detachNewThread { [self] in
            defer { finished.signal() }
            let config = KafkaConfig(bootstrapServers: bootstrap, [("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500"), ("log_level", "3")])
            guard let consumer = try? KafkaConsumer(config: config, groupID: group), (try? consumer.subscribe([topic])) != nil else { return }
            let batch = KafkaBatch()
            while !stopSignal.isSet {
                consumer.poll(into: batch, maxMessages: 100, timeoutMs: 50)
                let now = Set(((try? consumer.assignment()) ?? []).map(\.partition))
                lock.withLock { partitions = now }
            }
            batch.release()
            consumer.close(timeoutSeconds: 3)
        }
    }

    var held: Set<Int32> { lock.withLock { partitions } }

    func stop() {
        stopSignal.set()
        finished.wait()
    }
}

/// The suite's cluster, topics, pipeline and result forwarder, started once.
final class Harness: @unchecked Sendable {
    static let shared: Harness = {
        do { return try Harness() } catch { fatalError("harness: \(error)") }
    }()

    let cluster: MockCluster
    let input = "in.\(UUID().uuidString.prefix(6))", output = "out.\(UUID().uuidString.prefix(6))"
    let deadLetter = "dlq.\(UUID().uuidString.prefix(6))", results = "res.\(UUID().uuidString.prefix(6))"
    let set: PolicySet
    let configuration: Configuration
    let pipeline: Pipeline
    let forwarder: ResultForwarder
    let producer: KafkaProducer

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    init() throws {
        cluster = try MockCluster(brokers: 1)
        try cluster.createTopic(input, partitions: 3)
        for t in [output, deadLetter, results] { try cluster.createTopic(t, partitions: 1) }
        set = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        var c = Configuration()
        c.kafka.bootstrap = cluster.bootstrapServers
        c.kafka.groupId = "camfa-test-\(UUID().uuidString.prefix(6))"
        // The mock broker holds an empty fetch for the full fetch.wait.max.ms even when data
        // arrives meanwhile (a real broker answers at once): keep it short for API mode.
        c.kafka.properties = ["session.timeout.ms": "6000", "heartbeat.interval.ms": "500", "log_level": "3", "fetch.wait.max.ms": "10"]
        c.topics.input = input
        c.topics.output = output
        c.topics.deadLetter = deadLetter
        c.topics.results = results
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-requests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        c.stateDir = dir.path
        configuration = c
        pipeline = Pipeline(options: Pipeline.Options(configuration: c, policySet: set, enrichment: nil, secret: testSecret), logger: .init(label: "test"))
        forwarder = ResultForwarder(configuration: c, secret: testSecret, logger: .init(label: "test"))
        producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: cluster.bootstrapServers, [("log_level", "3")]))
        let p = pipeline, f = forwarder
        Thread.detachNewThread { try? p.run() }
        Thread.detachNewThread { try? f.run() }
        let deadline = Date().addingTimeInterval(30)
        while pipeline.health.assignmentsHandled == 0 || !pipeline.health.snapshot.ready {
            guard Date() < deadline else { throw CancellationError() }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    func produce(_ topic: String, key: String, value: String) throws {
        try producer.produce(topic: topic, key: Array(key.utf8), value: Array(value.utf8), token: 0)
        #expect(try producer.flush(timeoutMs: 5000))
    }

    func produceInput(key: String, value: [UInt8]) throws {
        try produce(input, key: key, value: String(decoding: value, as: UTF8.self))
    }

    struct Message {
        var key: String?
        var value: String
        var headers: [(String, String)]
        func header(_ name: String) -> String? { headers.last { $0.0 == name }?.1 }
    }

    /// The first message of `topic` (read from the beginning) that matches, within 15 s.
    func read(_ topic: String, _ matches: (Message) -> Bool) throws -> Message {
        let consumer = try KafkaConsumer(
            config: KafkaConfig(bootstrapServers: cluster.bootstrapServers, [("log_level", "3")]), groupID: "reader-\(UUID().uuidString)")
        defer { consumer.close(timeoutSeconds: 2) }
        try consumer.assign([TopicPartition(topic, 0): KafkaOffset.beginning])
        let batch = KafkaBatch()
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            consumer.poll(into: batch, maxMessages: 500, timeoutMs: 100)
            for r in batch.records {
                let m = Message(key: r.key.map { String(decoding: $0, as: UTF8.self) },
                                value: r.value.map { String(decoding: $0, as: UTF8.self) } ?? "",
                                headers: r.headers().map { ($0.0, $0.1.map { String(decoding: $0, as: UTF8.self) } ?? "") })
                if matches(m) { return m }
            }
        }
        Issue.record("no matching message on \(topic) within 15 s")
        throw CancellationError()
    }

    /// The result forwarder group's committed offset of the results topic, if any.
    func committedResultsOffset() throws -> Int64? {
        let consumer = try KafkaConsumer(
            config: KafkaConfig(bootstrapServers: cluster.bootstrapServers, [("log_level", "3")]), groupID: configuration.kafka.groupId + ".results")
        defer { consumer.close(timeoutSeconds: 2) }
        let tp = TopicPartition(results, 0)
        return try consumer.committed([tp], timeoutMs: 2000)[tp]
    }

    func waitFor(_ what: String, seconds: Double = 15, _ condition: () async -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !(await condition()) {
            guard Date() < deadline else {
                Issue.record("timed out waiting for: \(what)")
                throw CancellationError()
            }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
    }
}
