import CAMFACore
import CAMFAPolicyFiles
import CAMFATestSupport
import Testing

@testable import CAMFASimulator

/// Issue 24 item 2, in the engine: a labelled month through the shipped policy sets gives
/// the same decisions (flows, actions, methods, fired policies with their statistic values,
/// challenge ids) when users are spread over N tasks and every statistic of another key
/// kind is counted in M key tasks (`repartitionOperations` → `applyRepartitioned` →
/// `process(_:readings:)`) as in one task that sees everything. Without the hop, counting
/// per user partition misses the cross-partition attacks: that is the bug it fixes.
@Suite struct RepartitionEquivalenceTests {
    static let stream = LabelledStream(LabelledStream.Configuration(seed: 11, users: 400, days: 10)).logins.map(\.event)

    /// FNV-1a: a stable stand-in for a partitioner.
    static func partition(_ text: String, of n: Int) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return Int(h % UInt64(n))
    }

    static func reference(_ engine: Engine, _ events: [UEBAEvent]) -> [EvaluationOutcome] {
        var state = PartitionState(policySet: engine.policySet)
        return events.enumerated().map { i, e in engine.process(e, coordinates: "in/0/\(i)", state: &state) }
    }

    /// Users over `userTasks` tasks; with `repartition`, other keys over `keyTasks` tasks.
    static func split(_ engine: Engine, _ events: [UEBAEvent], userTasks: Int, keyTasks: Int, repartition: Bool, wire: Bool = false) -> [EvaluationOutcome] {
        var users = Array(repeating: PartitionState(policySet: engine.policySet), count: userTasks)
        var keys = Array(repeating: PartitionState(policySet: engine.policySet), count: keyTasks)
        return events.enumerated().map { i, e in
            let p = partition(e.originalIdentity, of: userTasks)
            guard repartition else { return engine.process(e, coordinates: "in/0/\(i)", state: &users[p]) }
            if let late = engine.lateness(of: e.requestDate, watermark: users[p].watermark) { return .rejected(late) }
            // One request per key task, the operations in their order.
            var requests: [Int: [RemoteOperation]] = [:]
            var order: [Int] = []
            for op in engine.repartitionOperations(e) {
                let k = partition("\(engine.policySet.keyspaces[op.keyspace].keyText)\u{0}\(op.key)", of: keyTasks)
                if requests[k] == nil { order.append(k) }
                requests[k, default: []].append(op)
            }
            var readings: RemoteReadings = [:]
            for k in order {
                let ops = requests[k]!
                if wire {
                    // As the daemon sends it: encoded, named by descriptor, sent twice (a
                    // restarted user task reads the event again); the second is not counted.
                    let request = RepartitionRequest(originPartition: Int32(p), originOffset: Int64(i), destination: Int32(k), operations: ops.map(engine.wire))
                    let received = try! RepartitionRequest(decoding: request.encoded())
                    let reply = try! RepartitionReply(decoding: engine.apply(received, state: &keys[k])!.encoded())
                    precondition(engine.apply(received, state: &keys[k]) == nil, "a request sent again was applied again")
                    for (op, reading) in zip(ops, reply.readings) { readings[op.id] = reading }
                } else {
                    for (op, reading) in zip(ops, engine.applyRepartitioned(ops, state: &keys[k])) { readings[op.id] = reading }
                }
            }
            // A key task's state through its checkpoint now and then: the origins it applied go with it.
            if wire, i % 997 == 0 {
                for k in keys.indices { keys[k] = try! PartitionState(restoring: keys[k].serialized(), policySet: engine.policySet) }
            }
            return engine.process(e, coordinates: "in/0/\(i)", readings: readings, state: &users[p])
        }
    }

    static func engine(_ set: String) throws -> Engine {
        Engine(policySet: try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/\(set)").path), challengeKey: testChallengeKey)
    }

    @Test(arguments: ["recommended", "examples"]) func spreadTasksDecideAsOneTask(set: String) throws {
        let engine = try Self.engine(set)
        #expect(engine.policySet.needsRepartition, "the \(set) set has statistics of other keys")
        let reference = Self.reference(engine, Self.stream)
        let challenged = reference.filter { $0.decisions.contains { $0.issuesChallenge } }.count
        #expect(challenged > 0, "the stream is challenged at all")
        for (userTasks, keyTasks, wire) in [(8, 3, false), (16, 16, false), (3, 1, false), (8, 4, true)] {
            let spread = Self.split(engine, Self.stream, userTasks: userTasks, keyTasks: keyTasks, repartition: true, wire: wire)
            let differing = zip(reference, spread).enumerated().filter { $0.element.0 != $0.element.1 }
            #expect(differing.isEmpty, "\(userTasks) user tasks, \(keyTasks) key tasks: \(differing.count) events decided otherwise, first at \(differing.first.map { "\($0.offset): \($0.element.0) vs \($0.element.1)" } ?? "")")
        }
    }

    /// The attack working before the fix: without the hop, 8 user tasks each see an eighth
    /// of an address's users and miss what one task catches.
    @Test func withoutTheHopPartitionsMissCrossPartitionAttacks() throws {
        let engine = try Self.engine("recommended")
        let reference = Self.reference(engine, Self.stream)
        let perPartition = Self.split(engine, Self.stream, userTasks: 8, keyTasks: 1, repartition: false)
        let fired = { (outcomes: [EvaluationOutcome]) in
            outcomes.reduce(0) { $0 + $1.decisions.reduce(0) { $0 + $1.firedPolicies.filter { $0.policy == "many_users_one_address" }.count } }
        }
        #expect(fired(reference) > 0, "the stream has addresses with many users")
        #expect(fired(perPartition) < fired(reference), "per partition: \(fired(perPartition)), one task: \(fired(reference))")
    }

    /// A key task counts each request once, whatever order they come in: a request that
    /// librdkafka gave up on and that was sent again after later ones still counts; sent
    /// again after it was applied, or below the floor of decided events, it does not.
    @Test func aKeyTaskCountsEachRequestOnceInAnyOrder() throws {
        let engine = try Self.engine("examples")
        let e = { (user: String, app: String, t: Int64) in
            UEBAEvent(appId: app, requestDate: t, ip: "203.0.113.50", originalIdentity: user, behaviorType: "login", behaviorResult: "success")
        }
        func request(_ offset: Int64, _ event: UEBAEvent, floor: Int64 = 0) -> RepartitionRequest {
            RepartitionRequest(originPartition: 2, originOffset: offset, floor: floor, destination: 0,
                               operations: engine.repartitionOperations(event).map(engine.wire))
        }
        var state = PartitionState(policySet: engine.policySet)
        let t: Int64 = 1_767_225_600_000
        let r110 = request(110, e("u2", "mail", t + 1)), r100 = request(100, e("u1", "portal", t))
        #expect(!r100.operations.isEmpty)
        #expect(engine.apply(r110, state: &state) != nil)
        #expect(engine.apply(r100, state: &state) != nil, "the late one still counts")
        #expect(engine.apply(r100, state: &state) == nil && engine.apply(r110, state: &state) == nil, "each once")
        let third = try #require(engine.apply(request(120, e("u3", "crm", t + 2), floor: 105), state: &state))
        // Three apps from the address: the third request's reading says so.
        #expect(third.readings.contains(.statistic(before: .int(2), current: .int(3))), "\(third.readings)")
        #expect(state.appliedOrigins[2] == AppliedOrigins(floor: 105, offsets: [110, 120]), "below the floor is forgotten")
        #expect(engine.apply(request(100, e("u1", "portal", t), floor: 105), state: &state) == nil, "below the floor: decided for good")
        let restored = try PartitionState(restoring: state.serialized(), policySet: engine.policySet)
        #expect(restored.appliedOrigins == state.appliedOrigins, "checkpointed with the state")
    }
}
