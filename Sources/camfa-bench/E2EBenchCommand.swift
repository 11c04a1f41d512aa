import ArgumentParser
import CAMFAKafka
import CAMFASimulator
import Foundation
import Histogram
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `camfa-bench e2e`: the whole daemon against a broker, in one run — the raw librdkafka
/// limit, camfa's steady-state throughput, latency at a fixed offered load and memory —
/// so that the ratios between them are measured on the same machine at the same time.
struct E2EBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "e2e",
        abstract: "End-to-end benchmark: broker + raw librdkafka consumer + `camfa run` (throughput, latency, memory).",
        discussion: """
            Starts `camfa broker`, produces a backlog of simulated events, measures a bare \
            librdkafka poll loop over it, then `camfa run` (the five example flows, enrichment \
            on) over the same data; then latency at --rate events/s offered; then memory with \
            --memory-users users. Prints one table and writes JSON to --results. \
            --soak S adds an S-second run at half the measured capacity, sampling RSS.
            """)

    @Option(help: "Events in the throughput backlog.") var events: Int = 600_000
    @Option(help: "Partitions of every topic (the mock broker keeps only about 5 MB per partition).") var partitions: Int32 = 96
    @Option(help: "Simulated users in the throughput and latency runs.") var users: Int = 100_000
    @Option(help: "Offered load of the latency run, events/s (also the simulator's event-time rate).") var rate: Double = 50_000
    @Option(help: "Seconds of offered load in the latency run.") var latencySeconds: Double = 20
    @Option(help: "Users in the memory run (0 skips it and the in-process memory figure).") var memoryUsers: Int = 1_000_000
    @Option(help: "Seconds of the RSS stability run at half the measured capacity (0: none; the issue's goal is 600).")
    var soak: Double = 0
    @Option(help: "Event time in the soak runs this many times faster than the wall clock, so the longest windows (30 days in the examples) fill and expire within the run; 1 = real time.")
    var soakTimeScale: Double = 1
    @Option(help: "Simulator seed.") var seed: UInt64 = 42
    @Flag(help: "Also decide a copy of the backlog with topics.repartition (README \"Repartitioning\"), for the hop's cost.")
    var repartition = false
    @Option(help: "Policy directory.") var policies: String = "policies/examples"
    @Option(help: "Directory with GeoLite2-City.mmdb and regexes.yaml (`make demo` fetches them); used when present.")
    var data: String = ".data"
    @Option(help: "Test data (maxmind/, uap-core/), used when --data has no databases.") var testdata: String = "../shared/testdata"
    @Option(help: "Directory for the JSON result (e2e-<UTC time>.json).") var results: String = "bench/results"
    @Option(help: "The camfa binary to run as daemon and broker (default: camfa beside camfa-bench).") var camfa: String?
    @Option(help: "The daemon's checkpoint.interval in seconds (default: the daemon's, 5 s); to see what checkpoints cost the latency.")
    var checkpointInterval: Int?

    func validate() throws {
        guard events >= 1000 else { throw ValidationError("--events must be at least 1000") }
        guard partitions >= 1 else { throw ValidationError("--partitions must be at least 1") }
        guard users >= 1, rate > 0, latencySeconds > 0, soak >= 0, memoryUsers >= 0, soakTimeScale >= 1 else {
            throw ValidationError("--users, --rate and --latency-seconds must be positive; --soak and --memory-users not negative; --soak-time-scale at least 1")
        }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .warning
            return h
        }
        let binary = camfa.map(Self.absolute) ?? CAMFABench.productExecutable()
        let machine = MachineDescription.current()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-e2e-\(getpid())").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let enrichment = resolveEnrichment()
        var report = E2EReport(machine: machine, parameters: parameters(enrichment: enrichment, binary: binary))
        note("camfa-bench e2e: \(machine.cores) cores, \(machine.cpuModel), load \(machine.loadAverage); work files in \(work)")
        if enrichment.city == nil && enrichment.rules == nil { note("enrichment data absent (\(data), \(testdata)): camfa runs with enrichment off") }

        // 1. The broker, every topic with --partitions partitions.
        let topics = ["bench.memory.ueba", "bench.memory.mfa", "bench.memory.ueba.dlq", Self.floorTopic]
            + (repartition ? [Self.repartInput, Self.repartInput + ".repartition", Self.repartInput + ".dlq", "bench.repart.mfa"] : [])
        let bootstrapBox = LineBox()
        let broker = try BenchChild(name: "broker", executable: binary,
                                    arguments: ["broker", "--brokers", "1", "--partitions", "\(partitions)"] + topics.flatMap { ["--topic", $0] },
                                    log: "\(work)/broker.log") { stream, line in
            if stream == 1, line.hasPrefix("bootstrap=") { bootstrapBox.set(String(line.dropFirst("bootstrap=".count))) }
        }
        defer { broker.stop(timeout: 5) }
        guard let bootstrap = bootstrapBox.wait(timeout: 30) else { throw BenchFailure("camfa broker printed no bootstrap line (\(work)/broker.log)") }

        // 2. The backlog: event times end just before now, so none is in the future.
        let nowMs = Int64(Date().timeIntervalSince1970 * 1000)
        let simulation = SimulatorConfiguration(seed: seed, users: users, startTime: nowMs - Int64(Double(events) / rate * 1000) - 5_000,
                                                eventsPerSecond: rate)
        var sim = Simulator(simulation)
        note("producing \(events) events to camfa.ueba (\(partitions) partitions)")
        let backlog = try BenchProducer.run(bootstrap: bootstrap, topic: "camfa.ueba", simulator: &sim, rate: .infinity, count: events, lingerMs: 5)
        guard backlog.deliveryErrors == 0 else { throw BenchFailure("\(backlog.deliveryErrors) backlog events were not delivered") }
        let retained = try Self.retained(bootstrap: bootstrap, topic: "camfa.ueba", partitions: partitions)
        guard retained == events else {
            throw BenchFailure("the mock broker kept \(retained) of \(events) events (about 5 MB per partition): use more --partitions or fewer --events")
        }
        report.backlog = backlog

        // 3. The raw limit.
        note("raw librdkafka poll loop over the backlog")
        report.raw = try RawConsumerBench.run(bootstrap: bootstrap, topic: "camfa.ueba", group: "bench-raw", expected: events,
                                              timeout: 60 + Double(events) / 2_000)

        // 4. camfa over the same backlog.
        note("camfa run over the same backlog")
        let spawned = benchNow()
        let daemon = try BenchDaemon(binary: binary, directory: work, name: "camfa", bootstrap: bootstrap, input: "camfa.ueba",
                                     output: "authing.security.mfa", group: "camfa-bench", policies: policies, enrichment: enrichment,
                                     maxFutureSkewHours: futureSkewHours, checkpointIntervalSeconds: checkpointInterval)
        defer { daemon.child.stop() }
        guard daemon.wait(timeout: 60 + Double(events) / 1_000, until: { $0.consumed >= events }) != nil else {
            throw BenchFailure("camfa consumed \(daemon.latest?.consumed ?? 0) of \(events) events in time; errors: \(daemon.errors); log \(work)/camfa.log")
        }
        report.camfa = CamfaThroughput(series: daemon.progress, total: events, spawned: spawned)
        report.policySet = daemon.policySet
        let capacity = report.camfa.eventsPerSecond

        // 4b. The same events through key tasks, while the first daemon idles.
        if repartition { report.repartitioned = try measureRepartitioned(bootstrap: bootstrap, simulation: simulation, work: work, binary: binary,
                                                                          enrichment: enrichment) }

        // 5. Latency on the same (now warm) daemon. When the offered load exceeds the measured
        // capacity, latency there is queueing; a run at half the capacity comes first, so
        // the report also has the latency of a load this machine sustains.
        if capacity > 0, capacity < rate {
            note("latency: \(Int(capacity / 2)) events/s (half the measured capacity) for \(latencySeconds) s")
            report.sustainedLatency = try measureLatency(bootstrap: bootstrap, daemon: daemon, simulator: &sim, rate: capacity / 2, capacity: capacity)
        }
        note("latency: \(Int(rate)) events/s offered for \(latencySeconds) s")
        report.latency = try measureLatency(bootstrap: bootstrap, daemon: daemon, simulator: &sim, rate: rate, capacity: capacity)

        // 6. Optional soak at half the measured capacity.
        if soak > 0 {
            let soakRate = max(1, report.camfa.eventsPerSecond / 2)
            note("soak: \(Int(soakRate)) events/s for \(Int(soak)) s, sampling RSS")
            report.soak = try runSoak(bootstrap: bootstrap, daemon: daemon, rate: soakRate)
        }
        report.peakRSS = ProcessMemory.of(daemon.child.pid)?.peak ?? 0
        daemon.child.stop()

        // 7. Memory at --memory-users users, in a fresh daemon.
        if memoryUsers > 0 {
            note("memory: \(memoryUsers) users through a fresh daemon")
            report.memory = try measureMemory(binary: binary, work: work, bootstrap: bootstrap, enrichment: enrichment,
                                              capacity: report.camfa.eventsPerSecond)
            note("memory: in-process engine figure (camfa-bench engine)")
            report.memory?.engineBytesPerUser = try Self.engineBytesPerUser(users: memoryUsers, seed: seed)
        }

        print(report.table())
        try FileManager.default.createDirectory(atPath: results, withIntermediateDirectories: true)
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let path = "\(results)/e2e-\(stamp).json"
        try report.json().write(to: URL(fileURLWithPath: path))
        print("written \(path)")
        try? FileManager.default.removeItem(atPath: work)
    }

    private func note(_ s: String) {
        FileHandle.standardError.write(Data("[\(ISO8601DateFormatter().string(from: Date()))] \(s)\n".utf8))
    }

    // MARK: - Phases

    /// With event time running faster than the wall clock (the soak's --soak-time-scale),
    /// events get ahead of their broker timestamps by up to the soak's scaled length: the
    /// daemon must accept them (engine.maxFutureSkew) or it dead-letters them as `future`.
    private var futureSkewHours: Int? {
        soak > 0 && soakTimeScale > 1 ? Int((soak * soakTimeScale / 3600).rounded(.up)) + 24 : nil
    }

    /// A topic no daemon reads: the latency floor's events go there.
    static let floorTopic = "bench.floor.ueba"
    static let repartInput = "bench.repart.ueba"

    /// A copy of the backlog (same seed) on its own topic, decided with `topics.repartition`.
    private func measureRepartitioned(bootstrap: String, simulation: SimulatorConfiguration, work: String, binary: String,
                                      enrichment: BenchDaemon.Enrichment) throws -> CamfaThroughput {
        var copy = Simulator(simulation)
        note("producing the same \(events) events to \(Self.repartInput)")
        let backlog = try BenchProducer.run(bootstrap: bootstrap, topic: Self.repartInput, simulator: &copy, rate: .infinity, count: events, lingerMs: 5)
        guard backlog.deliveryErrors == 0 else { throw BenchFailure("\(backlog.deliveryErrors) events of the copy were not delivered") }
        note("camfa run with topics.repartition over the copy")
        let spawned = benchNow()
        let daemon = try BenchDaemon(binary: binary, directory: work, name: "camfa-repart", bootstrap: bootstrap, input: Self.repartInput,
                                     output: "bench.repart.mfa", group: "camfa-bench-repart", policies: policies, enrichment: enrichment,
                                     maxFutureSkewHours: futureSkewHours, checkpointIntervalSeconds: checkpointInterval,
                                     repartition: Self.repartInput + ".repartition")
        defer { daemon.child.stop() }
        guard daemon.wait(timeout: 60 + Double(events) / 500, until: { $0.processed >= events }) != nil else {
            throw BenchFailure("camfa with repartition decided \(daemon.latest?.processed ?? 0) of \(events) events in time; errors: \(daemon.errors); log \(work)/camfa-repart.log")
        }
        return CamfaThroughput(series: daemon.progress, total: events, spawned: spawned, measure: \.processed)
    }

    /// The latency floor at `rate`: the same producer and the same kind of subscriber as the
    /// latency run (fetch wait 5 ms, as the daemon's), but the subscriber reads the input
    /// events themselves, so the figure is the broker and client path with no camfa in it.
    private func measureFloor(bootstrap: String, simulator sim: inout Simulator, rate: Double) throws -> LatencyResult {
        try offerLoad(bootstrap: bootstrap, input: Self.floorTopic, observed: Self.floorTopic, sampling: .everyRecord,
                      observer: "floor observer", group: "bench-floor-\(Int(rate))", simulator: &sim, rate: rate) { _ in true }
    }

    private func measureLatency(bootstrap: String, daemon: BenchDaemon, simulator sim: inout Simulator, rate: Double,
                                capacity: Double) throws -> LatencyResult {
        let floor = try measureFloor(bootstrap: bootstrap, simulator: &sim, rate: rate)
        let before = daemon.latest?.consumed ?? 0
        var result = try offerLoad(bootstrap: bootstrap, input: "camfa.ueba", observed: "authing.security.mfa", sampling: .mfaEvents,
                                   observer: "MFA observer", group: "bench-mfa-observer-\(Int(rate))", simulator: &sim, rate: rate) { load in
            // Bounded: an overloaded daemon's backlog would take long to drain; what it did not
            // process by then gives no sample, and the report says it did not keep up.
            let drain = min(180, max(30, Double(load.produced) / max(1, capacity) * 1.5))
            return daemon.wait(timeout: drain, until: { $0.consumed >= before + load.produced }) != nil
        }
        result.floor = floor.delivered
        return result
    }

    /// Offers `rate` events/s to `input` for --latency-seconds while an observer samples
    /// `observed`. `settle` runs after the load (it waits for whoever processes it) and says
    /// whether that kept up.
    private func offerLoad(bootstrap: String, input: String, observed: String, sampling: MFAObserver.Sampling, observer name: String,
                           group: String, simulator sim: inout Simulator, rate: Double,
                           settle: (BenchProducer.Result) -> Bool) throws -> LatencyResult {
        let observer = MFAObserver(bootstrap: bootstrap, topic: observed, partitions: partitions, group: group, sampling: sampling)
        guard observer.waitReady(timeout: 20) else { throw BenchFailure("\(name): \(observer.finish().error ?? "not ready in 20 s")") }
        let startMicros = benchWallMicros()
        let load = try BenchProducer.run(bootstrap: bootstrap, topic: input, simulator: &sim, rate: rate,
                                         duration: latencySeconds, record: true, lingerMs: 1)
        let caughtUp = settle(load)
        usleep(500_000)  // the last messages' fetch
        let (samples, error) = observer.finish()
        if let error { throw BenchFailure("\(name): \(error)") }
        let warmup = min(2, latencySeconds / 5)
        return LatencyResult(load: load, samples: samples, fromMicros: startMicros + Int64(warmup * 1e6),
                             offered: rate, warmupSeconds: warmup, caughtUp: caughtUp)
    }

    private func runSoak(bootstrap: String, daemon: BenchDaemon, rate soakRate: Double) throws -> SoakResult {
        // The same users, with event time moving from now at wall-clock speed times
        // --soak-time-scale, so windows fill, slide and expire during the run as they do in
        // production; with a scale, even the longest ones do, and what RSS does after that
        // is what stays.
        var sim = Simulator(SimulatorConfiguration(seed: seed, users: users, startTime: Int64(Date().timeIntervalSince1970 * 1000),
                                                   eventsPerSecond: soakRate / soakTimeScale))
        let sampler = RSSSampler(pid: daemon.child.pid, interval: max(1, min(10, soak / 60)))
        // Idle first if the overloaded latency run left a backlog.
        var previous = -1
        while let now = daemon.latest?.consumed, now != previous {
            previous = now
            usleep(2_000_000)
        }
        let before = daemon.latest?.consumed ?? 0
        let load = try BenchProducer.run(bootstrap: bootstrap, topic: "camfa.ueba", simulator: &sim, rate: soakRate, duration: soak, lingerMs: 5)
        let caughtUp = daemon.wait(timeout: 30, until: { $0.consumed >= before + load.produced }) != nil
        return SoakResult(rate: soakRate, seconds: soak, produced: load.produced, samples: sampler.finish(), caughtUp: caughtUp,
                          timeScale: soakTimeScale, consumed: (daemon.latest?.consumed ?? before) - before)
    }

    private func measureMemory(binary: String, work: String, bootstrap: String, enrichment: BenchDaemon.Enrichment,
                               capacity: Double) throws -> MemoryResult {
        let daemon = try BenchDaemon(binary: binary, directory: work, name: "camfa-memory", bootstrap: bootstrap, input: "bench.memory.ueba",
                                     output: "bench.memory.mfa", group: "camfa-bench-memory", policies: policies, enrichment: enrichment)
        defer { daemon.child.stop() }
        guard daemon.waitAssigned(timeout: 60) else { throw BenchFailure("memory daemon not assigned in 60 s; log \(work)/camfa-memory.log") }
        usleep(1_000_000)
        let baseline = ProcessMemory.of(daemon.child.pid)?.rss ?? 0
        // One warm-up login per user, then their sessions: every user is tracked by the end.
        let count = memoryUsers * 2
        let nowMs = Int64(Date().timeIntervalSince1970 * 1000)
        var sim = Simulator(SimulatorConfiguration(seed: seed &+ 1, users: memoryUsers, startTime: nowMs - Int64(Double(count) / rate * 1000) - 5_000,
                                                   eventsPerSecond: rate, warmupEventsPerUser: 1))
        // At the measured capacity, and never more than about 2 MB per partition ahead of the
        // daemon: the mock broker keeps only about 5 MB per partition, and the daemon slows
        // as its state grows, so pacing alone lets retention drop unread events.
        let pace = max(1_000, capacity)
        let maxLag = Int(partitions) * 4_000
        let load = try BenchProducer.run(bootstrap: bootstrap, topic: "bench.memory.ueba", simulator: &sim, rate: pace, count: count,
                                         countUsers: true, lingerMs: 5, hold: { $0 - (daemon.latest?.consumed ?? 0) > maxLag })
        // If retention dropped unread events the count is never reached: the figure stays
        // valid (growth / users tracked) and the report shows what was consumed.
        _ = daemon.wait(timeout: 60 + Double(count) / max(1_000, capacity), until: { $0.consumed >= load.produced })
        usleep(1_500_000)  // one more progress line, after the last event
        let after = ProcessMemory.of(daemon.child.pid)
        return MemoryResult(users: memoryUsers, events: load.produced, consumed: daemon.latest?.consumed ?? 0, pace: pace,
                            distinctUsersProduced: load.distinctUsers, trackedUsers: daemon.latest?.users ?? 0,
                            baselineRSS: baseline, rss: after?.rss ?? 0, peakRSS: after?.peak ?? 0)
    }

    // MARK: - Helpers

    private func resolveEnrichment() -> BenchDaemon.Enrichment {
        let fm = FileManager.default
        let city = "\(data)/GeoLite2-City.mmdb", rules = "\(data)/regexes.yaml"
        if fm.fileExists(atPath: city), fm.fileExists(atPath: rules) {
            return .init(source: data, city: Self.absolute(city), asn: nil, anonymous: nil, rules: Self.absolute(rules))
        }
        let mm = "\(testdata)/maxmind/test-data"
        let testRules = "\(testdata)/uap-core/regexes.yaml"
        if fm.fileExists(atPath: "\(mm)/GeoIP2-City-Test.mmdb"), fm.fileExists(atPath: testRules) {
            return .init(source: testdata, city: Self.absolute("\(mm)/GeoIP2-City-Test.mmdb"), asn: Self.absolute("\(mm)/GeoLite2-ASN-Test.mmdb"),
                         anonymous: Self.absolute("\(mm)/GeoIP2-Anonymous-IP-Test.mmdb"), rules: Self.absolute(testRules))
        }
        return .init(source: "none", city: nil, asn: nil, anonymous: nil, rules: nil)
    }

    private func parameters(enrichment: BenchDaemon.Enrichment, binary: String) -> [String: Any] {
        [
            "events": events, "partitions": Int(partitions), "users": users, "rate": rate, "latencySeconds": latencySeconds,
            "memoryUsers": memoryUsers, "memoryEvents": memoryUsers * 2, "soakSeconds": soak, "soakTimeScale": soakTimeScale, "checkpointIntervalSeconds": checkpointInterval.map { $0 as Any } ?? "daemon default", "seed": Int(seed), "policies": policies,
            "brokers": 1, "camfaBinary": binary, "checkpoint": "daemon default (interval 5s, 50000 events)",
            "daemonKafkaProperties": ["fetch.wait.max.ms": "\(BenchDaemon.fetchWaitMaxMs) (the mock broker holds empty fetches for the whole wait)"],
            "enrichment": ["source": enrichment.source, "cityDatabase": Self.orNull(enrichment.city), "asnDatabase": Self.orNull(enrichment.asn),
                           "anonymousIPDatabase": Self.orNull(enrichment.anonymous), "userAgentRules": Self.orNull(enrichment.rules)] as [String: Any],
            "producerLingerMs": ["backlog": 5, "latency": 1, "memory": 5, "soak": 5],
            "steadyState": "between 10 % and 90 % of the backlog consumed",
        ]
    }

    static func orNull(_ s: String?) -> Any { s.map { $0 as Any } ?? NSNull() }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// Messages the broker still holds across the topic's partitions.
    static func retained(bootstrap: String, topic: String, partitions: Int32) throws -> Int {
        let consumer = try KafkaConsumer(config: KafkaConfig(bootstrapServers: bootstrap), groupID: "bench-watermarks")
        defer { _ = consumer.close(timeoutSeconds: 2) }
        var total = 0
        for p in 0..<partitions {
            let w = try consumer.watermarks(TopicPartition(topic, p), timeoutMs: 5000)
            total += Int(w.high - w.low)
        }
        return total
    }

    /// The in-process figure of `camfa-bench engine` (bench/memory-policies), for comparison.
    static func engineBytesPerUser(users: Int, seed: UInt64) throws -> Int? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CAMFABench.ownExecutable())
        p.arguments = ["engine", "--events", "1000", "--users", "1000", "--memory-users", "\(users)", "--seed", "\(seed)", "--json"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        return object?["bytesPerUser"] as? Int
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = "camfa-bench e2e: " + d }
}

/// The broker's first stdout line, handed from its reader thread.
final class LineBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: String?
    func set(_ s: String) { lock.withLock { if value == nil { value = s } } }
    func wait(timeout: Double) -> String? {
        let deadline = benchNow() + timeout
        while benchNow() < deadline {
            if let v = lock.withLock({ value }) { return v }
            usleep(20_000)
        }
        return nil
    }
}

/// VmRSS of a process every `interval` seconds until `finish`.
final class RSSSampler: @unchecked Sendable {
    private let lock = NSLock()
    private var samples: [(seconds: Double, rss: Int)] = []
    private let stop = StopFlag()
    private let done = DispatchSemaphore(value: 0)

    init(pid: Int32, interval: Double) {
        let start = benchNow()
        Thread.detachNewThread { [self] in
            while !stop.isSet {
                if let m = ProcessMemory.of(pid) { lock.withLock { samples.append((benchNow() - start, m.rss)) } }
                var slept = 0.0
                while slept < interval, !stop.isSet { usleep(100_000); slept += 0.1 }
            }
            done.signal()
        }
    }

    func finish() -> [(seconds: Double, rss: Int)] {
        stop.set()
        done.wait()
        return lock.withLock { samples }
    }
}
