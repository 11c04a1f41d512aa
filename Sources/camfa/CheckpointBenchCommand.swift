import ArgumentParser
import CAMFACore
import CAMFAPolicyFiles
import CAMFASimulator
import CAMFAStore
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

    func run() throws {
        let set: PolicySet
        do { set = try PolicyLoader.loadPolicySet(at: policies) } catch {
            for e in error.errors { printError(e.description) }
            throw ExitCode(1)
        }
        let engine = Engine(policySet: set)
        let dir = stateDir ?? FileManager.default.temporaryDirectory.appendingPathComponent("camfa-bench-\(UUID().uuidString)").path
        defer { if stateDir == nil { try? FileManager.default.removeItem(atPath: dir) } }

        var sim = Simulator(SimulatorConfiguration(seed: seed, users: users, startTime: 1_767_225_600_000,
                                                   eventsPerSecond: 50_000, warmupEventsPerUser: eventsPerUser))
        var state = PartitionState(policySet: set)
        let buildStart = Self.now()
        var offset = 0
        for _ in 0..<(users * eventsPerUser) {
            _ = engine.process(sim.next().event, coordinates: "bench/0/\(offset)", state: &state)
            offset += 1
        }
        let buildSeconds = Self.now() - buildStart

        let store = try CheckpointStore(directory: dir)
        let id = PartitionID(topic: "bench", partition: 0)
        try store.claim(id, epoch: 1)

        // As the daemon does it: the poll thread takes a snapshot, the writer thread encodes
        // and writes it.
        var t = Self.now()
        let fullSnapshot = state.takeChangeSnapshot()
        let fullTake = Self.now() - t
        t = Self.now()
        let full = fullSnapshot.encoded()
        let fullEncode = Self.now() - t
        t = Self.now()
        try store.write(Self.write(full, id: id, offset: offset))
        let fullWrite = Self.now() - t
        // The poll thread's first change after a full snapshot copies the map it touches
        // while the writer still holds the snapshot (kept alive here, as the writer does).
        t = Self.now()
        withExtendedLifetime(fullSnapshot) {
            _ = engine.process(sim.next().event, coordinates: "bench/0/\(offset)", state: &state)
        }
        offset += 1
        let firstChangeAfterFull = Self.now() - t

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

        t = Self.now()
        guard let loaded = try store.load(id) else { throw ValidationError("nothing stored") }
        let load = Self.now() - t
        t = Self.now()
        let restored = try PartitionState(restoringMetadata: loaded.metadata, entries: loaded.entries, users: loaded.users, policySet: set)
        let decode = Self.now() - t
        store.close()
        let size = (try? FileManager.default.attributesOfItem(atPath: dir + "/" + CheckpointStore.fileName)[.size] as? Int) ?? 0

        func ms(_ s: Double) -> String { String(format: "%.0f ms", s * 1000) }
        print("checkpoint benchmark: \(users) users, \(state.liveKeyCount) live keys (\(full.upserts.count) entries, \(full.userUpserts.count) users), built in \(String(format: "%.1f", buildSeconds)) s")
        print("full checkpoint:        \(ms(fullTake + fullEncode + fullWrite)) (take \(ms(fullTake)) on the poll thread; encode \(ms(fullEncode)), write \(ms(fullWrite)) on the writer thread); database \(size >> 20) MB")
        print("incremental (\(changes) events, \(pending) keys+users changed, \(incremental.upserts.count + incremental.userUpserts.count) rows): \(ms(incrementalTake + incrementalEncode + incrementalWrite)) (take \(ms(incrementalTake)); encode \(ms(incrementalEncode)), write \(ms(incrementalWrite)))")
        print("restore:                \(ms(load + decode)) (load \(ms(load)), decode \(ms(decode))); restored \(restored.liveKeyCount) live keys")
        print("poll-thread stall:      \(ms(incrementalTake)) per incremental checkpoint (the daemon's steady state); \(ms(fullTake)) for a full one (first checkpoint after a policy change) plus \(ms(firstChangeAfterFull)) for the first event after it (copy-on-write of the maps it touches)")
        if restored.liveKeyCount != state.liveKeyCount {
            printError("restored \(restored.liveKeyCount) live keys, expected \(state.liveKeyCount)")
            throw ExitCode(1)
        }
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    static func write(_ c: PartitionChanges, id: PartitionID, offset: Int) -> CheckpointWrite {
        CheckpointWrite(partition: id, epoch: 1, nextOffset: Int64(offset), metadata: c.metadata, upserts: c.upserts, deletes: c.deletes,
                        userUpserts: c.userUpserts, userDeletes: c.userDeletes, full: c.full)
    }
}
