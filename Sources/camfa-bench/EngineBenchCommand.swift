import ArgumentParser
import CAMFACore
import CAMFAPolicyFiles
import CAMFASimulator
import CGlibcMalloc
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The engine alone, in memory, on one core: JSON decode + every example flow.
/// Reports events/s and the heap bytes of state per tracked user.
struct EngineBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine",
        abstract: "Engine throughput (decode + flows) and state bytes per user, no Kafka.")

    @Option(help: "Policy directory.") var policies: String = "policies/examples"
    @Option(help: "Events to process in the throughput run.") var events: Int = 1_000_000
    @Option(help: "Distinct users in the throughput run.") var users: Int = 100_000
    @Option(help: "Users for the memory run (0 skips it).") var memoryUsers: Int = 1_000_000
    @Option(help: "Policies for the memory run: a 30-day city profile and three windows per user.")
    var memoryPolicies: String = "bench/memory-policies"
    @Option(help: "Simulator seed.") var seed: UInt64 = 42
    @Flag(help: "Print JSON instead of a table.") var json = false
    @Flag(help: "Decode before the timed loop, so it measures the engine alone (for profilers: the loop is `processOnlyLoop`).")
    var processOnly = false

    func run() throws {
        let set: PolicySet
        do { set = try PolicyLoader.loadPolicySet(at: policies) } catch {
            for e in error.errors { printError(e.description) }
            throw ExitCode(1)
        }
        let engine = Engine(policySet: set, challengeKey: ChallengeKey(secret: Array("camfa-bench-secret".utf8)))

        // Throughput: encode first so the timed loop pays for decoding, as the daemon does.
        var sim = Simulator(SimulatorConfiguration(seed: seed, users: users, startTime: 1_767_225_600_000, eventsPerSecond: 2_000))
        var encoded: [[UInt8]] = []
        encoded.reserveCapacity(events)
        for _ in 0..<events { encoded.append(sim.next().event.jsonBytes()) }
        // Decode alone first, so the report can separate the engine from the JSON cost.
        let decodeStart = DispatchTime.now().uptimeNanoseconds
        var decodedCount = 0
        var scratch = UEBAEvent(requestDate: 0, originalIdentity: "")
        for bytes in encoded where (try? UEBAEvent.decode(json: bytes, into: &scratch)) != nil { decodedCount += 1 }
        let decodeSeconds = Double(DispatchTime.now().uptimeNanoseconds - decodeStart) / 1e9
        var state = PartitionState(policySet: set)
        var mfa = 0
        let seconds: Double
        // This thread's CPU time: on a shared machine it moves far less than wall time.
        var cpuSeconds = 0.0
        if processOnly {
            let decoded = encoded.compactMap { try? UEBAEvent.decode(json: $0) }
            let coordinates = decoded.indices.map { "bench/0/\($0)" }
            let start = DispatchTime.now().uptimeNanoseconds
            let cpuStart = Self.threadCPUNanoseconds()
            mfa = Self.processOnlyLoop(engine, decoded, coordinates, &state)
            cpuSeconds = Double(Self.threadCPUNanoseconds() - cpuStart) / 1e9
            seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        } else {
            let start = DispatchTime.now().uptimeNanoseconds
            let cpuStart = Self.threadCPUNanoseconds()
            defer { cpuSeconds = Double(Self.threadCPUNanoseconds() - cpuStart) / 1e9 }
            for (i, bytes) in encoded.enumerated() {
                guard let event = try? UEBAEvent.decode(json: bytes) else { continue }
                if case .decided(let ds) = engine.process(event, coordinates: "bench/0/\(i)", state: &state) {
                    for d in ds where d.issuesChallenge { mfa += 1 }
                }
            }
            seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        let rate = Double(events) / seconds

        // Memory: one located login per user from a home city plus two follow-ups, so each
        // user holds a 30-day city profile and the three IP/session windows.
        var bytesPerUser = 0.0
        var liveKeys = 0
        if memoryUsers > 0 {
            encoded = []
            let memSet: PolicySet
            do { memSet = try PolicyLoader.loadPolicySet(at: memoryPolicies) } catch {
                for e in error.errors { printError(e.description) }
                throw ExitCode(1)
            }
            let engine = Engine(policySet: memSet, challengeKey: ChallengeKey(secret: Array("camfa-bench-secret".utf8)))
            var memState = PartitionState(policySet: memSet)
            var msim = Simulator(SimulatorConfiguration(seed: seed &+ 1, users: memoryUsers, startTime: 1_767_225_600_000,
                                                        eventsPerSecond: 50_000, warmupEventsPerUser: 1))
            for i in 0..<(memoryUsers * 3) {
                _ = engine.process(msim.next().event, coordinates: "mem/0/\(i)", state: &memState)
                // As the daemon's checkpoints do: the change log is drained, not kept.
                if i % 50_000 == 49_999 { _ = memState.takeChanges() }
            }
            _ = memState.takeChanges()
            liveKeys = memState.liveKeyCount
            let users = memState.userCount
            // The state's own bytes: what the allocator gets back when it is dropped. (Heap
            // growth over the run would also count the simulator's growing population.)
            let withState = Self.heapInUse()
            memState = PartitionState(policySet: memSet)
            // Per tracked key of the user keyspace (the user's windows) plus the engine's
            // per-user record (last location, MFA state).
            bytesPerUser = Double(withState - Self.heapInUse()) / Double(max(1, users))
            withExtendedLifetime(msim) {}
        }

        if json {
            print(#"{"events":\#(events),"seconds":\#(seconds),"eventsPerSecond":\#(Int(rate)),"cpuNanosecondsPerEvent":\#(Int(cpuSeconds * 1e9 / Double(events))),"decodeEventsPerSecond":\#(Int(Double(decodedCount) / decodeSeconds)),"challenges":\#(mfa),"memoryUsers":\#(memoryUsers),"bytesPerUser":\#(Int(bytesPerUser)),"liveKeys":\#(liveKeys)}"#)
        } else {
            print("engine benchmark (one core, \(processOnly ? "engine only" : "decode +") \(set.flows.count) flows, \(set.policies.count) policies)")
            print(String(format: "  events            %d over %.2f s", events, seconds))
            print(String(format: "  throughput        %.0f events/s (decode alone: %.0f events/s)", rate, Double(decodedCount) / decodeSeconds))
            // On a shared machine wall time includes other processes' turns; CPU time does not.
            print(String(format: "  CPU time          %.0f ns/event (%.0f events per CPU second)",
                         cpuSeconds * 1e9 / Double(events), Double(events) / max(cpuSeconds, 1e-9)))
            print("  challenges issued \(mfa)")
            if memoryUsers > 0 {
                print(String(format: "  state per user    %.0f heap bytes per user (%d users simulated, %d live keys; %@)",
                             bytesPerUser, memoryUsers, liveKeys, memoryPolicies))
            }
        }
    }

    /// Its own symbol so that `valgrind --tool=callgrind --toggle-collect=` can count the
    /// engine's instructions and nothing else.
    @inline(never)
    static func processOnlyLoop(_ engine: Engine, _ events: [UEBAEvent], _ coordinates: [String], _ state: inout PartitionState) -> Int {
        var mfa = 0
        for i in events.indices {
            if case .decided(let ds) = engine.process(events[i], coordinates: coordinates[i], state: &state) {
                for d in ds where d.issuesChallenge { mfa += 1 }
            }
        }
        return mfa
    }

    static func threadCPUNanoseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    }

    /// Bytes the allocator has handed out and not got back (glibc's arenas plus its
    /// mmapped blocks): exact for what a data structure holds, slack between chunks aside.
    static func heapInUse() -> Int {
        let m = mallinfo2()
        return Int(m.uordblks + m.hblkhd)
    }
}
