import Foundation
import CAMFATestSupport
import Testing

/// Issue 24 item 3, black-box: a task moved to a host without its local checkpoint restores
/// from the changelog topic instead of re-reading the input.
@Suite(.serialized) struct ChangelogBlackBoxTests {
    typealias C = CheckpointBlackBoxTests

    /// Per partition, the furthest next offset any of the state directories holds.
    static func covered(_ dirs: [String]) -> Int {
        var best: [Int: Int] = [:]
        for dir in dirs where FileManager.default.fileExists(atPath: dir + "/camfa-state.sqlite3") {
            guard let text = try? C.dump(dir), let obj = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                  let parts = obj["partitions"] as? [[String: Any]] else { continue }
            for p in parts {
                guard let n = p["partition"] as? Int, let o = p["nextOffset"] as? Int else { continue }
                best[n] = max(best[n] ?? 0, o)
            }
        }
        return best.values.reduce(0, +)
    }

    /// Two daemons with their own state directories; one is SIGKILLed mid-stream and
    /// replaced by one with an empty directory. No MFA event of the uninterrupted run is
    /// missing, fewer than 10 % are published twice, and a fourth daemon with an empty
    /// directory restores, from the changelog alone, exactly the uninterrupted run's state.
    @Test func aKilledHostIsReplacedByAnEmptyOneWithoutReReadingTheInput() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let total = 40_000
        let messages = try C.simulated(total, seed: 7)
        try C.produceInChunks(broker.bootstrap, topic: "in.handoff", Array(messages[..<4_000]))
        let config = C.checkpointConfig
        let dirs = (0..<4).map { C.newStateDir("handoff-\($0)") }
        func daemon(_ i: Int) throws -> BlackBox.Daemon {
            try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "handoff", group: "handoff", stateDir: dirs[i],
                                extraConfig: config, changelog: "changelog.handoff")
        }
        let a = try daemon(0), b = try daemon(1)
        #expect(C.waitUntil(timeout: 60) { !a.logLines("partition restored").isEmpty && !b.logLines("partition restored").isEmpty },
                "\(a.log.suffix(2000))\n\(b.log.suffix(2000))")
        // A live stream (about 2,000 events/s; the mock broker's produce path is the pace),
        // with B killed in the middle of it: what B published since its last checkpoint
        // (at most checkpoint.interval of its share) is published again by its successor.
        var next = 4_000
        func stream(until end: Int) throws {
            while next < end {
                let upTo = min(end, next + 1_000)
                try BlackBox.produce(broker.bootstrap, topic: "in.handoff", Array(messages[next..<upTo]))
                next = upTo
                Thread.sleep(forTimeInterval: 0.3)
            }
        }
        try stream(until: 14_000)
        #expect(C.checkpointedCount(dirs[1]) > 0, "B checkpointed nothing: \(b.log.suffix(2000))")
        b.crash()
        let c = try daemon(2)
        try stream(until: 20_000)
        // The empty host takes over part of the dead one's work before the rest arrives.
        #expect(C.waitUntil(timeout: 90) { !c.logLines("partition restored from its changelog").isEmpty }, "\(c.log.suffix(2000))")
        try stream(until: total)
        #expect(C.waitUntil(timeout: 240) { Self.covered([dirs[0], dirs[2]]) >= total }, "\(a.log.suffix(2000))\n\(c.log.suffix(2000))")
        #expect(a.stop() == 0, "\(a.log.suffix(2000))")
        #expect(c.stop() == 0, "\(c.log.suffix(2000))")
        let fromChangelog = a.logLines("partition restored from its changelog") + c.logLines("partition restored from its changelog")
        #expect(fromChangelog.contains { ($0["records"] as? String).flatMap(Int.init) ?? 0 > 0 }, "no partition was restored from records")
        #expect(c.logLines("partition restored from its changelog").contains { ($0["records"] as? String).flatMap(Int.init) ?? 0 > 0 },
                "the empty host restored nothing from the changelog")

        // A fresh host with nothing local: every partition from the changelog alone.
        let d = try daemon(3)
        #expect(C.waitUntil(timeout: 60) { d.logLines("partition restored from its changelog").count >= 8 }, "\(d.log.suffix(3000))")
        #expect(d.stop() == 0)
        let restored = try C.dump(dirs[3])
        // Restarted on the same host, it wrote the last marker of every partition: each
        // restore reads that one record and starts from the local checkpoint.
        let d2 = try daemon(3)
        #expect(C.waitUntil(timeout: 60) { d2.logLines("partition restored from its changelog").count >= 8 }, "\(d2.log.suffix(3000))")
        #expect(d2.stop() == 0)
        let again = d2.logLines("partition restored from its changelog")
        #expect(again.allSatisfy { $0["local"] as? String == "current" && $0["records"] as? String == "1" }, "\(again)")
        #expect(try C.dump(dirs[3]) == restored)

        let ref = try C.reference(broker.bootstrap, name: "handoff", total: total)
        let ids = try C.mfaIDs(broker.bootstrap, topic: "out.handoff")
        let missing = Set(ref.ids).subtracting(ids), unknown = Set(ids).subtracting(ref.ids)
        let twice = ids.count - Set(ids).count
        print("handoff test: \(total) events, MFA events \(ref.ids.count) reference / \(ids.count) published (\(twice) twice, \(String(format: "%.1f", 100 * Double(twice) / Double(max(1, ref.ids.count)))) %)")
        #expect(missing.isEmpty && unknown.isEmpty, "MFA events missing: \(missing.count), unknown: \(unknown.count) of \(ref.ids.count)")
        #expect(Double(twice) < 0.10 * Double(ref.ids.count), "\(twice) of \(ref.ids.count) published twice")
        #expect(restored == ref.dump, "the state restored from the changelog differs from the uninterrupted run's")
    }

    /// The low watermark of each of the topic's partitions (Python's confluent-kafka).
    static func lowWatermarks(_ bootstrap: String, topic: String, partitions: Int) throws -> [Int] {
        let script = """
        import sys
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({'bootstrap.servers': sys.argv[1], 'group.id': 'camfa-test-watermarks'})
        print(' '.join(str(c.get_watermark_offsets(TopicPartition(sys.argv[2], p), timeout=10)[0]) for p in range(int(sys.argv[3]))))
        """
        let r = try #require(try runTool("python3", ["-c", script, bootstrap, topic, String(partitions)]))
        try #require(r.status == 0, "watermarks: \(r.stderr)")
        return r.stdout.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// The retention variant: the same handoff, but before the empty host joins, the input
    /// topic's early history is gone (the mock broker keeps about 5 MB per partition, as a
    /// size-based retention would: a padded stretch of the stream pushes the start out). A
    /// host that re-read the input could not rebuild the state; one that restores from the
    /// changelog ends exactly where an uninterrupted run that read everything in time does.
    @Test func theHandoffIsExactAfterRetentionDroppedTheInputsHistory() throws {
        guard BlackBox.requireKcat(), BlackBox.requireConfluentKafka() else { return }
        let broker = try BlackBox.broker()
        let total = 50_000, padded = 12_000..<42_000
        let pad = String(repeating: "p", count: 1_900)
        let messages = try C.simulated(total, seed: 11).enumerated().map { i, m -> (key: String, value: Data) in
            guard padded.contains(i) else { return m }
            let line = String(decoding: m.value, as: UTF8.self).replacingOccurrences(of: #""custom":{"#, with: #""custom":{"pad":"\#(pad)","#)
            return (m.key, Data(line.utf8))
        }
        let config = C.checkpointConfig
        let dirs = (0..<4).map { C.newStateDir("handoffret-\($0)") }
        func daemon(_ i: Int) throws -> BlackBox.Daemon {
            try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "handoffret", group: "handoffret", stateDir: dirs[i],
                                extraConfig: config, changelog: "changelog.handoffret")
        }
        // The uninterrupted run reads along, so it sees every event before retention drops it.
        let refState = C.newStateDir("handoffret-ref")
        let ref = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "handoffret", group: "ref-handoffret", output: "out.handoffret.ref",
                                      stateDir: refState, extraConfig: config)
        let a = try daemon(0), b = try daemon(1)
        defer { for x in [ref, a, b] where x.process.isRunning { _ = x.stop() } }
        #expect(C.waitUntil(timeout: 60) { !a.logLines("partition restored").isEmpty && !b.logLines("partition restored").isEmpty
            && !ref.logLines("partition restored").isEmpty }, "\(a.log.suffix(2000))\n\(b.log.suffix(2000))")
        // Paced by what both groups have checkpointed, so neither ever lags by more than a
        // few hundred KB a partition: nothing is dropped before it is processed.
        var next = 0
        func stream(until end: Int, hosts: [String]) throws {
            while next < end {
                let upTo = min(end, next + 1_000)
                try BlackBox.produce(broker.bootstrap, topic: "in.handoffret", Array(messages[next..<upTo]))
                next = upTo
                let caughtUp = C.waitUntil(timeout: 120) {
                    C.checkpointedCount(refState) >= next - 3_000 && Self.covered(hosts) >= next - 3_000
                }
                try #require(caughtUp, "the daemons fell behind at \(next):\n\(ref.log.suffix(1500))\n\(a.log.suffix(1500))")
            }
        }
        try stream(until: padded.lowerBound, hosts: [dirs[0], dirs[1]])
        #expect(C.checkpointedCount(dirs[1]) > 0, "B checkpointed nothing: \(b.log.suffix(2000))")
        b.crash()
        // A takes B's partitions over (from the changelog) before the padded stretch comes.
        let restoredBefore = a.logLines("partition restored from its changelog").count
        #expect(C.waitUntil(timeout: 90) { a.logLines("partition restored from its changelog").count > restoredBefore }, "\(a.log.suffix(2000))")
        try stream(until: padded.upperBound, hosts: [dirs[0], dirs[1]])
        let low = try Self.lowWatermarks(broker.bootstrap, topic: "in.handoffret", partitions: 8)
        print("retention handoff test: low watermarks before the empty host joins \(low)")
        #expect(low.count == 8 && low.allSatisfy { $0 > (padded.lowerBound / 8) }, "the early history is still there: \(low)")
        let c = try daemon(2)
        defer { if c.process.isRunning { _ = c.stop() } }
        #expect(C.waitUntil(timeout: 90) {
            c.logLines("partition restored from its changelog").contains { ($0["records"] as? String).flatMap(Int.init) ?? 0 > 0 }
        }, "the empty host restored nothing from the changelog: \(c.log.suffix(2000))")
        try stream(until: total, hosts: [dirs[0], dirs[2]])
        #expect(C.waitUntil(timeout: 240) { Self.covered([dirs[0], dirs[2]]) >= total && C.checkpointedCount(refState) >= total },
                "\(a.log.suffix(2000))\n\(c.log.suffix(2000))")
        #expect(a.stop() == 0 && c.stop() == 0 && ref.stop() == 0)

        let d = try daemon(3)
        #expect(C.waitUntil(timeout: 60) { d.logLines("partition restored from its changelog").count >= 8 }, "\(d.log.suffix(3000))")
        #expect(d.stop() == 0)
        let ids = try C.mfaIDs(broker.bootstrap, topic: "out.handoffret"), refIDs = try C.mfaIDs(broker.bootstrap, topic: "out.handoffret.ref")
        let missing = Set(refIDs).subtracting(ids), unknown = Set(ids).subtracting(refIDs)
        let twice = ids.count - Set(ids).count
        print("retention handoff test: \(total) events, MFA events \(refIDs.count) reference / \(ids.count) published (\(twice) twice)")
        #expect(!refIDs.isEmpty && missing.isEmpty && unknown.isEmpty, "MFA events missing: \(missing.count), unknown: \(unknown.count) of \(refIDs.count)")
        #expect(Double(twice) < 0.10 * Double(refIDs.count), "\(twice) of \(refIDs.count) published twice")
        #expect(try C.dump(dirs[3]) == (try C.dump(refState)), "the state restored from the changelog differs from the uninterrupted run's")
    }
}
