import ArgumentParser
import CAMFACore
import CAMFADaemon
import CAMFAPolicyFiles
import CAMFASimulator
import CAMFAStore
import CGlibcMalloc
import Foundation

/// The daemon's checkpoint costs for a large partition: full and incremental writes,
/// restore, and the time the poll thread spends taking changes (its stall).
struct CheckpointBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Checkpoint cost for one partition holding many users' state (SQLite in a temporary directory).")

    @Option(help: "Policy directory.") var policies: String = "policies/examples"
    @Option(help: "Users in the partition's state.") var users: Int = 1_000_000
    @Option(help: "Events per user to build the state.") var eventsPerUser: Int = 2
    @Option(help: "Share of users changed before the incremental checkpoint.") var changed: Double = 0.01
    @Option(help: "State directory (default: a new temporary one, removed afterwards).") var stateDir: String?
    @Option(help: "Simulator seed.") var seed: UInt64 = 42
    @Option(help: "Directory for the JSON result (checkpoint-<UTC time>.json).") var results: String = "bench/results"
    @Flag(help: "Only time restoring partition 0 of topic 'bench' from --state-dir (kept from an earlier run with --state-dir).")
    var restoreOnly = false

    func run() throws {
        let set: PolicySet
        do { set = try PolicyLoader.loadPolicySet(at: policies) } catch {
            for e in error.errors { printError(e.description) }
            throw ExitCode(1)
        }
        if restoreOnly {
            guard let stateDir else { throw ValidationError("--restore-only needs --state-dir") }
            let r = try Self.restore(try CheckpointStore(directory: stateDir), PartitionID(topic: "bench", partition: 0), set)
            print(String(format: "restore: %.0f ms (load %.0f ms, decode %.0f ms); %d live keys from %d segments and %d rows",
                         (r.load + r.decode) * 1000, r.load * 1000, r.decode * 1000, r.state.liveKeyCount, r.segments, r.rows))
            return
        }
        let engine = Engine(policySet: set, challengeKey: ChallengeKey(secret: Array("camfa-bench-secret".utf8)))
        let dir = stateDir ?? FileManager.default.temporaryDirectory.appendingPathComponent("camfa-bench-\(UUID().uuidString)").path
        defer { if stateDir == nil { try? FileManager.default.removeItem(atPath: dir) } }

        var sim = Simulator(SimulatorConfiguration(seed: seed, users: users, startTime: 1_767_225_600_000,
                                                   eventsPerSecond: 50_000, warmupEventsPerUser: eventsPerUser))
        var state = PartitionState(policySet: set)
        let buildStart = Self.now()
        var offset = 0
        /// The next simulated event through the engine, timed alone: the poll-thread stall it causes.
        func timedEvent() -> Double {
            let event = sim.next().event
            let start = Self.now()
            _ = engine.process(event, coordinates: "bench/0/\(offset)", state: &state)
            offset += 1
            return Self.now() - start
        }
        // The longest single event while the state grows: a map that outgrows its capacity
        // rehashes everything it holds on the poll thread.
        var longestBuildEvent = 0.0
        for _ in 0..<(users * eventsPerUser) { longestBuildEvent = max(longestBuildEvent, timedEvent()) }
        let buildSeconds = Self.now() - buildStart

        let store = try CheckpointStore(directory: dir)
        let id = PartitionID(topic: "bench", partition: 0)
        try store.claim(id, epoch: 1)

        // As the daemon does it: the poll thread takes a snapshot, the writer thread encodes
        // and writes it.
        var t = Self.now()
        var fullSnapshot: PartitionChangeSnapshot? = state.takeChangeSnapshot()
        let fullTake = Self.now() - t
        t = Self.now()
        var full: PartitionChanges? = fullSnapshot!.encoded(parallel: PartitionState.onEveryCore)
        let fullEncode = Self.now() - t
        var changelog = BenchChangelog()
        t = Self.now()
        try store.write(Self.write(full!, id: id, offset: offset))
        let fullWrite = Self.now() - t
        changelog.add(Self.write(full!, id: id, offset: offset))
        let fullSegments = full!.segments.count
        full = nil
        t = Self.now()
        store.waitForWALMerge()
        let fullMerge = Self.now() - t
        // While the writer still holds a full snapshot (kept alive here, as the writer does),
        // the poll thread's changes copy what they touch of the maps it shares: the longest
        // single event of the events that follow is the stall.
        var longestAfterFull = 0.0
        var totalAfterFull = 0.0
        let eventsAfterFull = 20_000
        withExtendedLifetime(fullSnapshot) {
            for _ in 0..<eventsAfterFull {
                let took = timedEvent()
                longestAfterFull = max(longestAfterFull, took)
                totalAfterFull += took
            }
        }
        let fullCount = fullSnapshot!.count
        fullSnapshot = nil
        // Those events' changes are checkpointed apart, so the incremental below holds only its own.
        let afterFull = state.takeChangeSnapshot().encoded()
        try store.write(Self.write(afterFull, id: id, offset: offset))
        changelog.add(Self.write(afterFull, id: id, offset: offset))

        // Incremental: events of `changed` of the users, as a steady stream between checkpoints.
        var changeSim = Simulator(SimulatorConfiguration(seed: seed &+ 1, users: users, startTime: 1_767_225_600_000 + Int64(users * eventsPerUser) / 50,
                                                         eventsPerSecond: 50_000))
        let changes = max(1, Int(Double(users) * changed))
        for _ in 0..<changes {
            _ = engine.process(changeSim.next().event, coordinates: "bench/0/\(offset)", state: &state)
            offset += 1
        }
        let pending = state.pendingChangeCount
        t = Self.now()
        let incrementalSnapshot = state.takeChangeSnapshot()
        let incrementalTake = Self.now() - t
        t = Self.now()
        let incremental = incrementalSnapshot.encoded()
        let incrementalEncode = Self.now() - t
        t = Self.now()
        try store.write(Self.write(incremental, id: id, offset: offset))
        let incrementalWrite = Self.now() - t
        changelog.add(Self.write(incremental, id: id, offset: offset))

        // The worst restore: rows on top of the base just short of the rebase threshold.
        let rowsBeforeRebase = state.liveKeyCount / 16
        var rowSim = Simulator(SimulatorConfiguration(seed: seed &+ 2, users: users, startTime: 1_767_225_600_000 + Int64(users * eventsPerUser) / 50 + 1_000,
                                                      eventsPerSecond: 50_000))
        func rows(_ c: PartitionChanges) -> Int { c.upserts.count + c.userUpserts.count + c.deletes.count + c.userDeletes.count }
        var rowsWritten = rows(afterFull) + rows(incremental)
        var rowWrites = 0.0
        while rowsWritten + state.pendingChangeCount < rowsBeforeRebase - 30_000 {
            for _ in 0..<changes {
                _ = engine.process(rowSim.next().event, coordinates: "bench/0/\(offset)", state: &state)
                offset += 1
            }
            let s = state.takeChangeSnapshot()
            let c = s.encoded()
            rowsWritten += rows(c)
            t = Self.now()
            try store.write(Self.write(c, id: id, offset: offset))
            rowWrites += Self.now() - t
            changelog.add(Self.write(c, id: id, offset: offset))
            // The daemon's writer would rebase now; the restore below is timed before it.
            if s.rebase { break }
        }
        store.waitForWALMerge()
        // Restores happen when a daemon restarts, after the old process gave its memory back:
        // so the built state is let go of first, and the heap returned to the system.
        let liveKeys = state.liveKeyCount
        state = PartitionState(policySet: set)
        Self.releaseFreedMemory()
        let worstFresh = try freshRestore(dir)
        var worst: TimedRestore? = try Self.restore(store, id, set)
        let worstTimes = (load: worst!.load, decode: worst!.decode, rows: worst!.rows)
        let worstDump = Self.digest(worst!.state)
        worst = nil
        Self.releaseFreedMemory()
        // The same state from its changelog, as a host without the local store restores it.
        var fromChangelog: BenchChangelog.Timed? = try changelog.restore(id, set)
        let changelogTimes = (replay: fromChangelog!.replay, decode: fromChangelog!.decode)
        let changelogMatches = Self.digest(fromChangelog!.state) == worstDump
        fromChangelog = nil
        let changelogRecords = changelog.records.count, changelogBytes = changelog.bytes
        changelog = BenchChangelog()
        Self.releaseFreedMemory()

        // The writer's rebase: the rows folded into a new base.
        t = Self.now()
        try store.rebase(id, epoch: 1)
        let rebase = Self.now() - t

        store.waitForWALMerge()
        Self.releaseFreedMemory()
        let baseFresh = try freshRestore(dir)
        let base = try Self.restore(store, id, set)
        store.close()
        let size = (try? FileManager.default.attributesOfItem(atPath: dir + "/" + CheckpointStore.fileName)[.size] as? Int) ?? 0

        func ms(_ s: Double) -> String { String(format: "%.0f ms", s * 1000) }
        print("checkpoint benchmark: \(users) users, \(liveKeys) live keys (\(fullCount) keys and users written as \(fullSegments) segments), built in \(String(format: "%.1f", buildSeconds)) s")
        print("full checkpoint:        \(ms(fullTake + fullEncode + fullWrite)) (take \(ms(fullTake)) on the poll thread; encode \(ms(fullEncode)), write \(ms(fullWrite)) on the writer thread), then \(ms(fullMerge)) more to merge the WAL into the database file on the store's merge thread; database \(size >> 20) MB")
        print("incremental (\(changes) events, \(pending) keys+users changed, \(incremental.upserts.count + incremental.userUpserts.count) rows): \(ms(incrementalTake + incrementalEncode + incrementalWrite)) (take \(ms(incrementalTake)); encode \(ms(incrementalEncode)), write \(ms(incrementalWrite)))")
        print("restore in a new process (as at daemon start), from the base alone: \(baseFresh)")
        print("restore in a new process, before a rebase (\(worstTimes.rows) rows on top of the base; the rebase threshold is \(rowsBeforeRebase)): \(worstFresh)")
        print("restore in this process (into the heap it freed): \(ms(base.load + base.decode)) from the base (load \(ms(base.load)), decode \(ms(base.decode))), \(ms(worstTimes.load + worstTimes.decode)) before a rebase (load \(ms(worstTimes.load)), decode \(ms(worstTimes.decode))); restored \(base.state.liveKeyCount) live keys")
        print("rows on top of the base: \(worstTimes.rows), written by incremental checkpoints in \(ms(rowWrites))")
        print("restore from the changelog (the same state; \(changelogRecords) records, \(changelogBytes >> 20) MB; fetching them not included): \(ms(changelogTimes.replay + changelogTimes.decode)) (replay \(ms(changelogTimes.replay)), decode \(ms(changelogTimes.decode)))\(changelogMatches ? "" : " DIFFERS")")
        print("rebase (writer thread): \(ms(rebase)): the rows folded into a new base")
        print("poll-thread stall:      \(ms(incrementalTake)) per incremental checkpoint (the daemon's steady state); \(ms(fullTake)) for a full one (first checkpoint after a policy change); the longest of the \(eventsAfterFull) events after a full take (copy-on-write of what they touch) \(ms(longestAfterFull)), \(ms(totalAfterFull)) for all of them; the longest event while building the state \(ms(longestBuildEvent))")
        if Self.digest(base.state) != worstDump || base.state.liveKeyCount != liveKeys || !changelogMatches {
            printError("restored \(base.state.liveKeyCount) live keys, expected \(liveKeys), or the restores (store, changelog) differ")
            throw ExitCode(1)
        }
        let machine = MachineDescription.current()
        let seconds: [String: Double] = [
            "fullCheckpoint": fullTake + fullEncode + fullWrite, "fullTake": fullTake, "fullEncode": fullEncode, "fullWrite": fullWrite,
            "fullWALMerge": fullMerge, "incrementalCheckpoint": incrementalTake + incrementalEncode + incrementalWrite,
            "incrementalTake": incrementalTake, "restoreInProcessFromBase": base.load + base.decode,
            "restoreInProcessBeforeRebase": worstTimes.load + worstTimes.decode,
            "restoreFromChangelog": changelogTimes.replay + changelogTimes.decode, "changelogReplay": changelogTimes.replay,
            "changelogDecode": changelogTimes.decode, "rebase": rebase, "longestEventAfterFullTake": longestAfterFull,
        ]
        let object: [String: Any] = [
            "benchmark": "checkpoint", "users": users, "liveKeys": liveKeys, "eventsPerUser": eventsPerUser, "changedShare": changed,
            "policies": policies, "seed": seed, "databaseBytes": size, "rowsBeforeRebase": worstTimes.rows,
            "changelog": ["records": changelogRecords, "bytes": changelogBytes, "matchesTheStore": changelogMatches,
                          "note": "restoreFromChangelog: replaying the records a host without the local store reads, and decoding; fetching them from Kafka not included"] as [String: Any],
            "restoreInANewProcess": ["fromBase": baseFresh, "beforeRebase": worstFresh],
            "seconds": seconds,
            "machine": ["cores": machine.cores, "cpuModel": machine.cpuModel, "loadAverageAtStart": machine.loadAverage, "memoryBytes": machine.memoryBytes] as [String: Any],
        ]
        try FileManager.default.createDirectory(atPath: results, withIntermediateDirectories: true)
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let path = "\(results)/checkpoint-\(stamp).json"
        try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: path))
        print("written \(path)")
    }

    /// Times a restore in a child process (`--restore-only`): a daemon restores at start-up,
    /// into an empty heap, not next to a benchmark's millions of keys.
    func freshRestore(_ dir: String) throws -> String {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        child.arguments = ["checkpoint", "--restore-only", "--state-dir", dir, "--policies", policies]
        let out = Pipe()
        child.standardOutput = out
        try child.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        child.waitUntilExit()
        guard child.terminationStatus == 0 else { throw ValidationError("the restore child failed: \(text)") }
        return text.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "restore: ", with: "")
    }

    struct TimedRestore {
        var state: PartitionState
        var load: Double
        var decode: Double
        var segments: Int
        var rows: Int
    }

    static func restore(_ store: CheckpointStore, _ id: PartitionID, _ set: PolicySet) throws -> TimedRestore {
        var t = now()
        guard let loaded = try store.load(id) else { throw ValidationError("nothing stored for \(id) in \(store.directory)") }
        let load = now() - t
        t = now()
        let state = try PartitionState(restoringMetadata: loaded.metadata, segments: loaded.segments, entries: loaded.entries,
                                       users: loaded.users, policySet: set, parallel: PartitionState.onEveryCore)
        return TimedRestore(state: state, load: load, decode: now() - t, segments: loaded.segments.count,
                            rows: loaded.entries.count + loaded.users.count)
    }

    /// The serialized state's length and trailing checksum (FNV-64 over all of it).
    static func digest(_ state: PartitionState) -> [UInt8] {
        let bytes = state.serialized()
        return withUnsafeBytes(of: bytes.count) { Array($0) } + bytes.suffix(8)
    }

    /// Hands freed heap pages back to the kernel, as an exiting process would.
    static func releaseFreedMemory() { _ = malloc_trim(0) }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    static func write(_ c: PartitionChanges, id: PartitionID, offset: Int) -> CheckpointWrite {
        CheckpointWrite(partition: id, epoch: 1, nextOffset: Int64(offset), metadata: c.metadata, upserts: c.upserts, deletes: c.deletes,
                        userUpserts: c.userUpserts, userDeletes: c.userDeletes, full: c.full, segments: c.segments)
    }
}
