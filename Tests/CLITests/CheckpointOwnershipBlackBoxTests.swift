import Foundation
import Testing

/// Issue 5, black-box: a stale owner of a partition is fenced off the state store, and a
/// corrupt checkpoint is refused whole until an operator drops it. Each test has a broker
/// of its own (their topics are not in the shared broker's list) and small inputs.
@Suite(.serialized) struct CheckpointOwnershipBlackBoxTests {
    typealias T = CheckpointBlackBoxTests

    /// The partition's stored next offset, read with `camfa state dump --partition`, which
    /// loads only that partition (the others may be corrupt); nil without a checkpoint.
    static func nextOffset(_ stateDir: String, _ partition: Int) -> Int? {
        guard let r = try? runCamfa(["state", "dump", "--state-dir", stateDir, "--partition", String(partition)]), r.status == 0,
              let obj = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
              let parts = obj["partitions"] as? [[String: Any]] else { return nil }
        return parts.first?["nextOffset"] as? Int
    }

    static func epoch(_ stateDir: String, _ partition: Int) -> Int? {
        guard let r = try? runCamfa(["state", "dump", "--state-dir", stateDir, "--partition", String(partition)]), r.status == 0,
              let obj = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
              let parts = obj["partitions"] as? [[String: Any]] else { return nil }
        return parts.first?["epoch"] as? Int
    }

    /// Per partition, the next offset of the reference dump: how many messages it holds.
    static func offsets(ofDump dump: String) -> [Int: Int] {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any],
              let parts = obj["partitions"] as? [[String: Any]] else { return [:] }
        var result: [Int: Int] = [:]
        for p in parts { if let n = p["partition"] as? Int, let o = p["nextOffset"] as? Int { result[n] = o } }
        return result
    }

    static func sqlite(_ database: String, _ sql: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        p.arguments = [database, sql]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CLIError(message: "sqlite3 exited \(p.terminationStatus) for \(sql)") }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Skips (or fails under CI) when the sqlite3 shell is missing.
    static func requireSQLiteShell() -> Bool {
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/sqlite3") { return true }
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            Issue.record("the sqlite3 shell is not installed; `make test` installs it (apt-get install sqlite3)")
        }
        return false
    }

    @Test func aCorruptCheckpointIsRefusedWholeUntilTheOperatorDropsIt() throws {
        guard BlackBox.requireKcat(), Self.requireSQLiteShell() else { return }
        let broker = try BlackBox.Broker(topics: ["in.corrupt:4", "out.corrupt", "out.corrupt.ref", "dlq.corrupt"])
        let total = 8_000
        let messages = try T.simulated(total, seed: 9)
        try T.produceInChunks(broker.bootstrap, topic: "in.corrupt", Array(messages[..<4_000]))
        let state = T.newStateDir("corrupt")
        let first = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "corrupt", group: "corrupt", stateDir: state,
                                        extraConfig: T.checkpointConfig)
        #expect(T.waitCheckpointed(state, total: 4_000, timeout: 120), "\(first.log.suffix(2000))")
        #expect(first.stop() == 0)

        // One flipped checksum in partition 2's stored state (its base's first segment, or its
        // first row when it has no base): SQLite sees a valid B-tree, only camfa's checksum
        // catches it.
        let stored = try #require(Self.nextOffset(state, 2))
        let database = state + "/camfa-state.sqlite3"
        let pid = "(SELECT pid FROM partitions WHERE part = 2)"
        let hasBase = try Self.sqlite(database, "SELECT count(*) FROM segments WHERE pid = \(pid)") != "0"
        _ = try Self.sqlite(database, hasBase
            ? "UPDATE segments SET sum = sum + 1 WHERE pid = \(pid) AND seq = 0"
            : "UPDATE entries SET sum = sum + 1 WHERE pid = \(pid) AND key = (SELECT min(key) FROM entries WHERE pid = \(pid))")
        #expect(Self.nextOffset(state, 2) == nil, "the corrupt partition must not load")

        try T.produceInChunks(broker.bootstrap, topic: "in.corrupt", Array(messages[4_000...]))
        let second = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "corrupt", group: "corrupt", stateDir: state,
                                         extraConfig: T.checkpointConfig)
        #expect(T.waitUntil(timeout: 60) { !second.logLines("cannot restore partition; it is paused and the daemon is unhealthy").isEmpty },
                "\(second.log.suffix(2000))")
        let refused = second.logLines("cannot restore partition; it is paused and the daemon is unhealthy")
        #expect(refused.map { $0["partition"] as? String } == ["2"])
        #expect(refused.first?["code"] as? String == "corrupt")
        // The reference run (own group and state) meanwhile: it tells each partition's size.
        let ref = try T.reference(broker.bootstrap, name: "corrupt", total: total)
        let sizes = Self.offsets(ofDump: ref.dump)
        // The other partitions carry on to the end; the corrupt one is not processed at all.
        #expect(T.waitUntil(timeout: 120) { [0, 1, 3].allSatisfy { Self.nextOffset(state, $0) == sizes[$0] } },
                "\(second.log.suffix(2000))")
        #expect(try Self.sqlite(database, "SELECT next_offset FROM partitions WHERE part = 2") == String(stored))
        #expect(second.logLines("partition restore succeeded on retry; consumption resumed").isEmpty)
        #expect(second.stop() == 0)

        // The documented recovery: drop the partition's checkpoint; it is rebuilt from the topic.
        let drop = try runCamfa(["state", "drop", "--state-dir", state, "--topic", "in.corrupt", "--partition", "2"])
        #expect(drop.status == 0, "\(drop.stderr)")
        let third = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "corrupt", group: "corrupt", stateDir: state,
                                        extraConfig: T.checkpointConfig)
        #expect(T.waitCheckpointed(state, total: total, timeout: 120), "\(third.log.suffix(2000))")
        #expect(third.stop() == 0)
        let rebuilt = third.logLines("partition restored").filter { $0["partition"] as? String == "2" }
        #expect(rebuilt.first?["nextOffset"] as? String == "none (auto.offset.reset)")
        #expect(try T.dump(state) == ref.dump)
        let ids = Set(try T.mfaIDs(broker.bootstrap, topic: "out.corrupt"))
        #expect(Set(ref.ids).isSubset(of: ids), "MFA events missing: \(Set(ref.ids).subtracting(ids).count) of \(ref.ids.count)")
    }

    @Test func aStoppedDaemonThatResumesIsFencedAndOverwritesNothing() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.Broker(topics: ["in.fence:4", "out.fence", "out.fence.ref", "dlq.fence"])
        let total = 10_000
        let messages = try T.simulated(total, seed: 10)
        try T.produceInChunks(broker.bootstrap, topic: "in.fence", Array(messages[..<2_000]))
        let state = T.newStateDir("fence")
        let a = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "fence", group: "fence", stateDir: state,
                                    extraConfig: T.checkpointConfig)
        #expect(T.waitUntil(timeout: 60) { a.logLines("partition restored").count >= 4 }, "\(a.log.suffix(2000))")
        // B's writes wait 3 s each, so B always has one pending when it is frozen.
        let b = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "fence", group: "fence", stateDir: state,
                                    environment: ["CAMFA_TEST_CHECKPOINT_DELAY_MS": "3000"], extraConfig: T.checkpointConfig)
        #expect(T.waitUntil(timeout: 60) { !b.logLines("partition restored").isEmpty }, "\(b.log.suffix(2000))")
        // The rest arrives once both own partitions, so B has work (and writes) in progress.
        try T.produceInChunks(broker.bootstrap, topic: "in.fence", Array(messages[2_000...]))
        Thread.sleep(forTimeInterval: 1.5)
        kill(b.process.processIdentifier, SIGSTOP)
        let taken = Set(b.logLines("partition restored").compactMap { ($0["partition"] as? String).flatMap(Int.init) })
        let stale = Dictionary(b.logLines("partition restored").compactMap { line -> (Int, Int)? in
            guard let p = (line["partition"] as? String).flatMap(Int.init), let e = (line["epoch"] as? String).flatMap(Int.init) else { return nil }
            return (p, e)
        }, uniquingKeysWith: max)
        // After B's session timeout A owns B's partitions and checkpoints them with newer epochs.
        #expect(T.waitUntil(timeout: 90) { taken.allSatisfy { p in Self.epoch(state, p).map { $0 > stale[p]! } ?? false } },
                "\(a.log.suffix(2000))")
        let newer = Dictionary(uniqueKeysWithValues: taken.map { ($0, Self.epoch(state, $0) ?? 0) })
        kill(b.process.processIdentifier, SIGCONT)
        // B's pending write carries its old epoch: refused, whether B still believes it owns
        // the partition or has already learnt it lost it.
        func fenced() -> [[String: Any]] {
            b.logLines("partition fenced by a newer owner in the state store; its state is dropped")
                + b.logLines("checkpoint of an ended ownership period refused: the partition is fenced by a newer owner")
        }
        #expect(T.waitUntil(timeout: 30) { !fenced().isEmpty }, "\(b.log.suffix(3000))")
        #expect(fenced().allSatisfy { taken.contains(($0["partition"] as? String).flatMap(Int.init) ?? -1) })
        // The newer checkpoints were not overwritten by the stale owner.
        #expect(taken.allSatisfy { p in (Self.epoch(state, p) ?? 0) >= newer[p]! })
        #expect(T.waitCheckpointed(state, total: total, timeout: 180), "\(a.log.suffix(2000))\n\(b.log.suffix(2000))")
        #expect(a.stop() == 0)
        #expect(b.stop() == 0)
        let got = try T.dump(state)
        let ref = try T.reference(broker.bootstrap, name: "fence", total: total)
        #expect(got == ref.dump, "state after the fenced owner resumed differs from the reference")
        let ids = Set(try T.mfaIDs(broker.bootstrap, topic: "out.fence"))
        #expect(Set(ref.ids).isSubset(of: ids), "MFA events missing: \(Set(ref.ids).subtracting(ids).count) of \(ref.ids.count)")
    }
}
