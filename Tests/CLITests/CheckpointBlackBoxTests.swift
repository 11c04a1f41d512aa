import Foundation
import CAMFATestSupport
import Testing

/// Issue 5's acceptance, black-box: checkpoints survive SIGKILL, rebalances, broker faults
/// and storage faults, judged by `camfa state dump` against an uninterrupted reference run
/// over the same input partitions.
@Suite(.serialized) struct CheckpointBlackBoxTests {
    static let checkpointConfig = """
        checkpoint:
          interval: 1s
          events: 5000
        """

    /// Simulated events as (user, JSON line) messages.
    static func simulated(_ count: Int, seed: Int) throws -> [(key: String, value: Data)] {
        let sim = try runCamfa(["simulate", "--events", String(count), "--users", "2000", "--seed", String(seed), "--rate", "200"])
        #expect(sim.status == 0, "\(sim.stderr)")
        return sim.stdout.split(separator: "\n").map { line in
            let user = (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["originalIdentity"] as? String ?? ""
            return (user, Data(line.utf8))
        }
    }

    static func produceInChunks(_ bootstrap: String, topic: String, _ messages: [(key: String, value: Data)]) throws {
        for start in stride(from: 0, to: messages.count, by: 20_000) {
            try BlackBox.produce(bootstrap, topic: topic, Array(messages[start..<min(messages.count, start + 20_000)]))
        }
    }

    static func dump(_ stateDir: String) throws -> String {
        let r = try runCamfa(["state", "dump", "--state-dir", stateDir, "--omit-epoch"])
        guard r.status == 0 else { throw CLIError(message: "state dump failed: \(r.stderr)") }
        return r.stdout
    }

    /// Sum of the checkpointed next offsets: how many input messages the store covers.
    static func checkpointedCount(_ stateDir: String) -> Int {
        guard FileManager.default.fileExists(atPath: stateDir + "/camfa-state.sqlite3"),
              let text = try? dump(stateDir),
              let obj = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let parts = obj["partitions"] as? [[String: Any]] else { return 0 }
        return parts.reduce(0) { $0 + ($1["nextOffset"] as? Int ?? 0) }
    }

    /// Waits until the store covers `total` input messages.
    static func waitCheckpointed(_ stateDir: String, total: Int, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if checkpointedCount(stateDir) >= total { return true }
            Thread.sleep(forTimeInterval: 1)
        }
        return false
    }

    static func waitFor(_ daemon: BlackBox.Daemon, _ message: String, timeout: Double = 40) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if daemon.log.contains(message) { return true }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return false
    }

    static func mfaIDs(_ bootstrap: String, topic: String) throws -> [String] {
        try BlackBox.consumeOnce(bootstrap, topic: topic).map { m in
            (try? JSONSerialization.jsonObject(with: m.value) as? [String: Any])?["id"] as? String ?? "?"
        }
    }

    /// The uninterrupted run: one daemon, its own group, state dir and output topic.
    static func reference(_ bootstrap: String, name: String, total: Int) throws -> (dump: String, ids: [String]) {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-ref-\(name)-\(UUID().uuidString)").path
        let daemon = try BlackBox.Daemon(bootstrap: bootstrap, name: name, group: "ref-\(name)", output: "out.\(name).ref",
                                         stateDir: state, extraConfig: checkpointConfig)
        #expect(waitCheckpointed(state, total: total, timeout: 240), "reference run did not finish:\n\(daemon.log.suffix(3000))")
        #expect(daemon.stop() == 0)
        return (try dump(state), try mfaIDs(bootstrap, topic: "out.\(name).ref"))
    }

    static func newStateDir(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("camfa-state-\(name)-\(UUID().uuidString)").path
    }

    @Test func sigkillAtTwentyPointsEndsInTheReferenceState() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let total = 100_000
        let messages = try Self.simulated(total, seed: 5)
        #expect(messages.count == total)
        try Self.produceInChunks(broker.bootstrap, topic: "in.crash", messages)
        let started = Date()
        let ref = try Self.reference(broker.bootstrap, name: "crash", total: total)
        let referenceSeconds = Date().timeIntervalSince(started)
        #expect(!ref.ids.isEmpty)

        let state = Self.newStateDir("crash")
        var rng = SeededRandom(seed: 20_261_123)
        var kills = 0
        var progress: [Int] = []
        while kills < 20 {
            let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "crash", group: "crash", stateDir: state,
                                             extraConfig: Self.checkpointConfig)
            // Kill only once it owns every partition (the killed predecessor leaves the group
            // after its session timeout), so each kill interrupts real work.
            #expect(Self.waitUntil(timeout: 60) { daemon.logLines("partition restored").count >= 16 }, "\(daemon.log.suffix(2000))")
            Thread.sleep(forTimeInterval: rng.uniform(0.2, 2.0))
            daemon.crash()
            kills += 1
            progress.append(Self.checkpointedCount(state))
        }
        let last = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "crash", group: "crash", stateDir: state,
                                       extraConfig: Self.checkpointConfig)
        #expect(Self.waitCheckpointed(state, total: total, timeout: 240), "\(last.log.suffix(3000))")
        #expect(last.stop() == 0)
        let crashed = try Self.dump(state)
        let ids = try Self.mfaIDs(broker.bootstrap, topic: "out.crash")
        print("crash test: \(total) events, \(kills) SIGKILLs, checkpointed after each kill \(progress), reference run \(Int(referenceSeconds)) s, whole test \(Int(Date().timeIntervalSince(started))) s, MFA events \(ref.ids.count) reference / \(ids.count) with duplicates")
        // Kills landed while work was still going on, not all after the end.
        #expect(progress.filter { $0 < total }.count >= 10, "\(progress)")
        #expect(crashed == ref.dump, "state after \(kills) kills differs from the reference")
        let missing = Set(ref.ids).subtracting(ids), unknown = Set(ids).subtracting(ref.ids)
        #expect(missing.isEmpty && unknown.isEmpty, "MFA events missing: \(missing.count), unknown: \(unknown.count) of \(ref.ids.count)")
        #expect(ids.count >= ref.ids.count)
    }

    /// Log lines of partitions restored from a checkpoint (not started empty).
    static func restoredFromCheckpoint(_ d: BlackBox.Daemon) -> [[String: Any]] {
        d.logLines("partition restored").filter { ($0["nextOffset"] as? String).flatMap(Int.init) != nil }
    }

    static func waitUntil(timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return false
    }

    @Test func twoDaemonsSharingAStateDirectorySurviveAStopAndRestart() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let total = 40_000
        let messages = try Self.simulated(total, seed: 6)
        try Self.produceInChunks(broker.bootstrap, topic: "in.rebalance", Array(messages[..<20_000]))
        let state = Self.newStateDir("rebalance")
        let a = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "rebalance", group: "rebalance", stateDir: state,
                                    extraConfig: Self.checkpointConfig)
        let b = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "rebalance", group: "rebalance", stateDir: state,
                                    extraConfig: Self.checkpointConfig)
        #expect(Self.waitUntil(timeout: 60) { !a.logLines("partition restored").isEmpty && !b.logLines("partition restored").isEmpty },
                "\(a.log.suffix(2000))\n\(b.log.suffix(2000))")
        Thread.sleep(forTimeInterval: 2)
        // B leaves mid-stream: A takes its partitions over from B's final checkpoints.
        #expect(b.stop() == 0, "\(b.log.suffix(3000))")
        try Self.produceInChunks(broker.bootstrap, topic: "in.rebalance", Array(messages[20_000...]))
        #expect(Self.waitUntil(timeout: 60) { !Self.restoredFromCheckpoint(a).isEmpty }, "\(a.log.suffix(2000))")
        // B comes back and gets partitions A checkpointed when it gave them up.
        let b2 = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "rebalance", group: "rebalance", stateDir: state,
                                     extraConfig: Self.checkpointConfig)
        #expect(Self.waitUntil(timeout: 60) { !Self.restoredFromCheckpoint(b2).isEmpty }, "\(b2.log.suffix(2000))")
        #expect(Self.waitCheckpointed(state, total: total, timeout: 240), "\(a.log.suffix(2000))\n\(b2.log.suffix(2000))")
        #expect(a.stop() == 0)
        #expect(b2.stop() == 0)
        for d in [a, b, b2] {
            #expect(d.logLines("partition fenced by a newer owner in the state store; its state is dropped").isEmpty)
        }
        let got = try Self.dump(state)
        let ref = try Self.reference(broker.bootstrap, name: "rebalance", total: total)
        let ids = try Self.mfaIDs(broker.bootstrap, topic: "out.rebalance")
        #expect(got == ref.dump)
        let missing = Set(ref.ids).subtracting(ids), unknown = Set(ids).subtracting(ref.ids)
        #expect(missing.isEmpty && unknown.isEmpty, "MFA events missing: \(missing.count), unknown: \(unknown.count) of \(ref.ids.count)")
    }

    @Test func brokerDownAndRequestErrorsAreRecoveredFrom() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.Broker(topics: ["in.faults:4", "out.faults", "out.faults.ref", "dlq.faults"], faults: true)
        let total = 30_000
        let messages = try Self.simulated(total, seed: 7)
        try Self.produceInChunks(broker.bootstrap, topic: "in.faults", messages)
        let ref = try Self.reference(broker.bootstrap, name: "faults", total: total)

        let state = Self.newStateDir("faults")
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "faults", group: "faults", stateDir: state,
                                         extraConfig: Self.checkpointConfig)
        #expect(Self.waitFor(daemon, "partitions assigned"))
        Thread.sleep(forTimeInterval: 1)
        #expect(broker.inject("errors produce 30 NOT_LEADER_FOR_PARTITION") == "ok")
        #expect(broker.inject("errors fetch 10 NOT_LEADER_FOR_PARTITION") == "ok")
        #expect(broker.inject("errors offsetCommit 10 REQUEST_TIMED_OUT") == "ok")
        Thread.sleep(forTimeInterval: 2)
        #expect(broker.inject("down 1") == "ok")
        Thread.sleep(forTimeInterval: 4)
        #expect(broker.inject("up 1") == "ok")
        #expect(broker.inject("errors produce 10 REQUEST_TIMED_OUT") == "ok")
        #expect(Self.waitCheckpointed(state, total: total, timeout: 240), "\(daemon.log.suffix(3000))")
        #expect(daemon.process.isRunning)
        #expect(daemon.stop() == 0)
        #expect(try Self.dump(state) == ref.dump)
        // Read with retries: leftover injected Fetch errors may hit kcat too.
        let ids = try BlackBox.consume(broker.bootstrap, topic: "out.faults", atLeast: ref.ids.count, settle: 1).map { m in
            (try? JSONSerialization.jsonObject(with: m.value) as? [String: Any])?["id"] as? String ?? "?"
        }
        let missing = Set(ref.ids).subtracting(ids), unknown = Set(ids).subtracting(ref.ids)
        #expect(unknown.isEmpty)
        // Every MFA event is there. (Under pushed Produce errors the mock cluster may ack a
        // retried batch as a duplicate without storing it; such acks carry no offset and the
        // daemon publishes the event again.)
        #expect(missing.isEmpty, "missing \(missing.count) of \(ref.ids.count); read \(ids.count)")
        #expect(daemon.logLines("partition fenced by a newer owner in the state store; its state is dropped").isEmpty)
    }

    @Test func aReadOnlyStorePausesConsumptionUntilItIsWritableAgain() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let total = 30_000
        let messages = try Self.simulated(total, seed: 8)
        try Self.produceInChunks(broker.bootstrap, topic: "in.storage", Array(messages[..<10_000]))
        let state = Self.newStateDir("storage")
        let flag = state + ".readonly"
        // Read-only from the start: the restores fail, are retried, and succeed once it clears.
        FileManager.default.createFile(atPath: flag, contents: nil)
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "storage", group: "storage", stateDir: state,
                                         environment: ["CAMFA_TEST_STORE_READONLY_FILE": flag], extraConfig: Self.checkpointConfig)
        #expect(Self.waitFor(daemon, "cannot restore partition; it is paused and the daemon is unhealthy", timeout: 60), "\(daemon.log.suffix(2000))")
        #expect(daemon.logLines("cannot restore partition; it is paused and the daemon is unhealthy").allSatisfy { $0["code"] as? String == "readOnly" })
        Thread.sleep(forTimeInterval: 1)
        #expect(try BlackBox.consumeOnce(broker.bootstrap, topic: "out.storage").isEmpty, "nothing is processed while no partition is restored")
        try FileManager.default.removeItem(atPath: flag)
        #expect(Self.waitUntil(timeout: 30) { daemon.logLines("partition restore succeeded on retry; consumption resumed").count == 4 },
                "\(daemon.log.suffix(2000))")
        #expect(Self.waitCheckpointed(state, total: 10_000, timeout: 120))
        FileManager.default.createFile(atPath: flag, contents: nil)
        try Self.produceInChunks(broker.bootstrap, topic: "in.storage", Array(messages[10_000...]))
        #expect(Self.waitFor(daemon, "checkpoint storage failed; consumption paused until it recovers", timeout: 60), "\(daemon.log.suffix(2000))")
        let fault = try #require(daemon.logLines("checkpoint storage failed; consumption paused until it recovers").first)
        #expect(fault["code"] as? String == "readOnly")
        // Paused: nothing more is published while the store is read-only, though input waits.
        Thread.sleep(forTimeInterval: 2)
        let before = try BlackBox.consumeOnce(broker.bootstrap, topic: "out.storage").count
        let stored = Self.checkpointedCount(state)
        Thread.sleep(forTimeInterval: 4)
        #expect(try BlackBox.consumeOnce(broker.bootstrap, topic: "out.storage").count == before)
        #expect(Self.checkpointedCount(state) == stored)
        #expect(stored < total)
        try FileManager.default.removeItem(atPath: flag)
        #expect(Self.waitFor(daemon, "checkpoint storage recovered; consumption resumed", timeout: 30))
        #expect(Self.waitCheckpointed(state, total: total, timeout: 240), "\(daemon.log.suffix(2000))")
        #expect(daemon.stop() == 0)
        let got = try Self.dump(state)
        let ref = try Self.reference(broker.bootstrap, name: "storage", total: total)
        #expect(got == ref.dump)
        #expect(Set(try Self.mfaIDs(broker.bootstrap, topic: "out.storage")) == Set(ref.ids))
    }
}
