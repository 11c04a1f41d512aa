import Foundation
import Histogram

/// camfa's throughput from the daemon's progress lines: the steady state is the rate
/// between the first progress line at or past 10 % of the backlog and the last one at or
/// below 90 % (both real samples, so no interpolation over idle start-up time).
struct CamfaThroughput {
    var events = 0
    var processed = 0
    var eventsPerSecond = 0.0
    var steadySeconds = 0.0
    /// From spawning `camfa run` to the first progress line with events consumed.
    var startSeconds = 0.0
    /// From the first progress line with events consumed to the first with all of them.
    var firstToLastSeconds = 0.0
    /// The daemon's CPU seconds over the steady-state window.
    var steadyCPUSeconds = 0.0
    var steadyEvents = 0

    init() {}

    /// `measure`: what counts as done. With key tasks the user tasks also consume their
    /// replies, so a repartitioned run is measured by events decided (`processed`).
    init(series s: [BenchDaemon.Progress], total: Int, spawned: Double, measure: KeyPath<BenchDaemon.Progress, Int> = \.consumed) {
        events = total
        processed = s.last?.processed ?? 0
        guard let first = s.firstIndex(where: { $0[keyPath: measure] > 0 }), let last = s.firstIndex(where: { $0[keyPath: measure] >= total }) else { return }
        startSeconds = s[first].time - spawned
        firstToLastSeconds = s[last].time - s[first].time
        var i = s.firstIndex(where: { $0[keyPath: measure] >= total / 10 }) ?? first
        var j = s.lastIndex(where: { $0[keyPath: measure] <= total - total / 10 }) ?? last
        // A run too short for the window: from the last line before any event was consumed
        // (a lower bound on the rate, as it includes idle time) to the first with all of them.
        if j <= i { (i, j) = (max(0, first - 1), last) }
        guard j > i else { return }
        steadySeconds = s[j].time - s[i].time
        steadyEvents = s[j][keyPath: measure] - s[i][keyPath: measure]
        steadyCPUSeconds = s[j].cpu - s[i].cpu
        eventsPerSecond = Double(steadyEvents) / steadySeconds
    }
}

/// Latency of MFA events at a fixed offered load. `decision`: produce time of the input
/// event → the MFA event's Kafka timestamp (camfa's producer sets it when it publishes;
/// 1 ms resolution). `delivered`: produce time → the MFA event received by a subscriber
/// (this bench's consumer; includes camfa's producer batching, the broker and the fetch).
struct LatencyResult {
    var offered = 0.0
    var achieved = 0.0
    var produced = 0
    var warmupSeconds = 0.0
    var caughtUp = true
    var matched = 0
    var decision = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    var delivered = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    /// The same load read straight back by a bare subscriber, no camfa (`measureFloor`):
    /// produce → receipt.
    var floor: Histogram<UInt64>?

    init() {}

    init(load: BenchProducer.Result, samples: [MFAObserver.Sample], fromMicros: Int64, offered: Double, warmupSeconds: Double, caughtUp: Bool) {
        self.offered = offered
        achieved = load.achievedRate
        produced = load.produced
        self.warmupSeconds = warmupSeconds
        self.caughtUp = caughtUp
        for s in samples {
            guard let produced = load.produceMicros[s.triggerKey], produced >= fromMicros else { continue }
            matched += 1
            // The timestamp is whole milliseconds (truncated): take the middle of its millisecond.
            _ = decision.record(UInt64(max(0, s.publishedMs * 1000 + 500 - produced)))
            _ = delivered.record(UInt64(max(0, s.consumedMicros - produced)))
        }
    }
}

struct SoakResult {
    var rate: Double
    var seconds: Double
    var produced: Int
    var samples: [(seconds: Double, rss: Int)]
    var caughtUp: Bool
    /// Event time per wall-clock time (--soak-time-scale).
    var timeScale: Double
    /// Events the daemon consumed from the start of the soak until 30 s after its end.
    var consumed: Int

    /// RSS after the first 10 % of the run (allocator and caches warm) and at the end.
    var settled: Int { samples.first(where: { $0.seconds >= seconds / 10 })?.rss ?? samples.first?.rss ?? 0 }
    /// RSS at half time: with a time scale that covers the longest window in the first half,
    /// the second half is the steady state, and its growth the figure that matters.
    var halfway: Int { samples.first(where: { $0.seconds >= seconds / 2 })?.rss ?? 0 }
    var final: Int { samples.last?.rss ?? 0 }
    var maximum: Int { samples.map(\.rss).max() ?? 0 }
}

struct MemoryResult {
    var users: Int
    var events: Int
    var consumed: Int
    var pace: Double
    var distinctUsersProduced: Int
    /// Users with state in the daemon (its progress line).
    var trackedUsers: Int
    var baselineRSS: Int
    var rss: Int
    var peakRSS: Int
    var engineBytesPerUser: Int?
    /// RSS growth of the daemon over the run divided by the users it tracks: everything
    /// the daemon keeps per user (every example policy's windows, user MFA state,
    /// allocator slack), not the engine's state alone.
    var bytesPerUser: Double { trackedUsers > 0 ? Double(rss - baselineRSS) / Double(trackedUsers) : 0 }
}

struct E2EReport {
    var machine: MachineDescription
    var parameters: [String: Any]
    var date = Date()
    var backlog = BenchProducer.Result()
    var raw = RawConsumerBench.Result()
    var camfa = CamfaThroughput()
    /// `--repartition`: the same backlog with `topics.repartition` (README "Repartitioning").
    var repartitioned: CamfaThroughput?
    var latency = LatencyResult()
    /// At half the measured capacity, when the offered load is above it.
    var sustainedLatency: LatencyResult?
    var policySet = (flows: 0, policies: 0)
    var soak: SoakResult?
    var memory: MemoryResult?
    var peakRSS = 0

    var rawSteadyRate: Double { raw.steadySeconds > 0 ? Double(raw.messages - 2 * (raw.messages / 10)) / raw.steadySeconds : 0 }
    var ratio: Double { rawSteadyRate > 0 ? camfa.eventsPerSecond / rawSteadyRate : 0 }
    /// Events per CPU-second of each consumer's own process, over the same windows.
    var rawPerCPUSecond: Double { raw.steadyCPUSeconds > 0 ? Double(raw.messages - 2 * (raw.messages / 10)) / raw.steadyCPUSeconds : 0 }
    var camfaPerCPUSecond: Double { camfa.steadyCPUSeconds > 0 ? Double(camfa.steadyEvents) / camfa.steadyCPUSeconds : 0 }
    var cpuRatio: Double { rawPerCPUSecond > 0 ? camfaPerCPUSecond / rawPerCPUSecond : 0 }

    static func ms(_ micros: UInt64) -> Double { Double(micros) / 1000 }

    func table() -> String {
        func f(_ v: Double, _ d: Int = 0) -> String { String(format: "%.\(d)f", v) }
        func mb(_ b: Int) -> String { f(Double(b) / 1_048_576, 1) + " MB" }
        var rows: [(String, String)] = [
            ("machine", "\(machine.cores) cores, \(machine.cpuModel), load \(machine.loadAverage) at start (shared: absolute figures are depressed, compare ratios)"),
            ("parameters", "\(parameters["events"]!) events, \(parameters["partitions"]!) partitions, \(parameters["users"]!) users, seed \(parameters["seed"]!), policies \(parameters["policies"]!) (\(policySet.flows) flows, \(policySet.policies) policies)"),
            ("enrichment", ((parameters["enrichment"] as? [String: Any])?["source"] as? String) ?? "?"),
            ("backlog produced", "\(backlog.produced) events, \(f(Double(backlog.bytes) / Double(max(1, backlog.produced)))) bytes each, \(f(backlog.achievedRate)) events/s"),
            ("raw librdkafka poll loop", "\(f(rawSteadyRate)) events/s steady (10–90 %), \(f(raw.eventsPerSecond)) first→last, \(f(Double(raw.bytes) / raw.firstToLastSeconds / 1_048_576, 1)) MB/s"),
            ("camfa end to end", "\(f(camfa.eventsPerSecond)) events/s steady (10–90 %), all \(camfa.events) in \(f(camfa.firstToLastSeconds, 1)) s after \(f(camfa.startSeconds, 1)) s start-up"),
            ("camfa / raw", "\(f(ratio, 3)) (goal ≥ 0.35)"),
        ] + (repartitioned.map { r in [
            ("with repartition", "\(f(r.eventsPerSecond)) events/s steady (decided), all \(r.events) in \(f(r.firstToLastSeconds, 1)) s: \(f(r.eventsPerSecond / max(1, camfa.eventsPerSecond), 3)) × camfa without, \(f(r.steadyCPUSeconds > 0 ? Double(r.steadyEvents) / r.steadyCPUSeconds : 0)) events per CPU-second"),
        ] } ?? []) + [
            ("per CPU-second", "raw \(f(rawPerCPUSecond)) events, camfa \(f(camfaPerCPUSecond)) events (each consumer's process, broker excluded): camfa / raw \(f(cpuRatio, 3))"),
        ]
        func latencyRows(_ l: LatencyResult, _ label: String) {
            func p(_ h: Histogram<UInt64>) -> String {
                "p50 \(f(Self.ms(h.valueAtPercentile(50)), 2)) ms, p99 \(f(Self.ms(h.valueAtPercentile(99)), 2)) ms, p99.9 \(f(Self.ms(h.valueAtPercentile(99.9)), 2)) ms, max \(f(Self.ms(h.max), 2)) ms"
            }
            rows.append(("latency load\(label)", "\(f(l.offered)) events/s offered, \(f(l.achieved)) achieved, \(l.produced) events, \(l.matched) MFA samples after \(f(l.warmupSeconds, 1)) s warm-up\(l.caughtUp ? "" : " (daemon did NOT keep up: queueing)")"))
            rows.append(("  → MFA published", p(l.decision) + " (goal p99 ≤ 5 ms at 50k/s; 1 ms timestamp resolution)"))
            rows.append(("  → MFA consumed", p(l.delivered)))
            if let floor = l.floor {
                rows.append(("  floor: same load, no camfa", p(floor) + " (produce → a bare subscriber; camfa's p99 is \(f(Double(l.decision.valueAtPercentile(99)) / Double(max(1, floor.valueAtPercentile(99))), 1)) × this)"))
            }
        }
        if let s = sustainedLatency { latencyRows(s, " (half capacity)") }
        latencyRows(latency, "")
        rows += [
            ("camfa peak RSS", "\(mb(peakRSS)) (VmHWM, throughput + latency\(soak == nil ? "" : " + soak") runs)"),
        ]
        if let m = memory {
            rows.append(("memory run", "\(m.events) events of \(m.users) users at \(f(m.pace)) events/s (\(m.consumed) consumed); \(m.trackedUsers) users tracked; RSS \(mb(m.baselineRSS)) → \(mb(m.rss)), peak \(mb(m.peakRSS))"))
            rows.append(("bytes per tracked user", "\(f(m.bytesPerUser)) (daemon RSS growth, the example flows); \(m.engineBytesPerUser.map(String.init) ?? "n/a") (in-process engine, bench/memory-policies) (goal ≤ 600)"))
        }
        if let s = soak {
            rows.append(("soak", "\(f(s.rate)) events/s for \(f(s.seconds)) s, event time ×\(f(s.timeScale)): RSS \(mb(s.settled)) after 10 % → \(mb(s.halfway)) at half time → \(mb(s.final)) at end, max \(mb(s.maximum)); consumed \(s.consumed) of \(s.produced)\(s.caughtUp ? "" : " (daemon did NOT keep up)")"))
        }
        let width = rows.map(\.0.count).max() ?? 0
        return "camfa-bench e2e\n" + rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }

    func json() throws -> Data {
        func percentiles(_ h: Histogram<UInt64>) -> [String: Any] {
            ["p50Micros": Int(h.valueAtPercentile(50)), "p99Micros": Int(h.valueAtPercentile(99)),
             "p999Micros": Int(h.valueAtPercentile(99.9)), "maxMicros": Int(h.max), "count": Int(h.totalCount)]
        }
        func latencyObject(_ l: LatencyResult) -> [String: Any] {
            ["offeredEventsPerSecond": l.offered, "achievedEventsPerSecond": l.achieved, "produced": l.produced,
             "samples": l.matched, "warmupSeconds": l.warmupSeconds, "daemonKeptUp": l.caughtUp,
             "published": percentiles(l.decision), "consumed": percentiles(l.delivered),
             "floor": l.floor.map { percentiles($0) as Any } ?? NSNull(),
             "definition": "published: input produce time → MFA event Kafka timestamp (camfa's publish, 1 ms resolution); consumed: → received by a subscriber; floor: the same load on a topic no daemon reads, produce → received by the same kind of subscriber (broker and client only)"]
        }
        var object: [String: Any] = [
            "benchmark": "camfa-bench e2e",
            "date": ISO8601DateFormatter().string(from: date),
            "machine": ["cores": machine.cores, "cpuModel": machine.cpuModel, "loadAverageAtStart": machine.loadAverage,
                        "memoryBytes": machine.memoryBytes,
                        "note": "shared machine: absolute figures are depressed; ratios within one run are what compares"] as [String: Any],
            "parameters": parameters,
            "backlog": ["events": backlog.produced, "bytes": backlog.bytes, "eventsPerSecond": backlog.achievedRate] as [String: Any],
            "raw": ["messages": raw.messages, "bytes": raw.bytes, "eventsPerSecond": rawSteadyRate, "steadySeconds": raw.steadySeconds,
                    "firstToLastEventsPerSecond": raw.eventsPerSecond, "firstToLastSeconds": raw.firstToLastSeconds,
                    "startSeconds": raw.startSeconds] as [String: Any],
            "camfa": ["events": camfa.events, "processed": camfa.processed, "eventsPerSecond": camfa.eventsPerSecond,
                      "steadySeconds": camfa.steadySeconds, "firstToLastSeconds": camfa.firstToLastSeconds, "startSeconds": camfa.startSeconds] as [String: Any],
            "ratio": ratio,
            "repartitioned": repartitioned.map { r in
                ["events": r.events, "processed": r.processed, "eventsPerSecond": r.eventsPerSecond, "steadySeconds": r.steadySeconds,
                 "firstToLastSeconds": r.firstToLastSeconds, "startSeconds": r.startSeconds,
                 "eventsPerCPUSecond": r.steadyCPUSeconds > 0 ? Double(r.steadyEvents) / r.steadyCPUSeconds : 0,
                 "ratioToCamfa": camfa.eventsPerSecond > 0 ? r.eventsPerSecond / camfa.eventsPerSecond : 0,
                 "definition": "the same backlog (a copy, same seed) on its own topic, decided by a daemon with topics.repartition: user and key tasks in one process; events decided per second, 10–90 %"] as [String: Any] as Any
            } ?? NSNull(),
            "cpu": ["rawEventsPerCPUSecond": rawPerCPUSecond, "camfaEventsPerCPUSecond": camfaPerCPUSecond, "ratio": cpuRatio,
                    "rawSteadyCPUSeconds": raw.steadyCPUSeconds, "camfaSteadyCPUSeconds": camfa.steadyCPUSeconds,
                    "definition": "events per CPU-second of each consumer's own process (all its threads) over the 10–90 % window; the broker's CPU is in neither"] as [String: Any],
            "latency": latencyObject(latency),
            "sustainedLatency": sustainedLatency.map { latencyObject($0) as Any } ?? NSNull(),
            "policySet": ["flows": policySet.flows, "policies": policySet.policies],
            "memory": ["peakRSSBytes": peakRSS] as [String: Any],
            "goals": ["ratioAtLeast": 0.35, "p99MillisecondsAtMost": 5, "bytesPerUserAtMost": 600, "soak": "RSS stable over 600 s at half capacity",
                      "ratioMet": ratio >= 0.35, "p99Met": latency.decision.valueAtPercentile(99) <= 5_000] as [String: Any],
        ]
        if let m = memory {
            var mem = object["memory"] as! [String: Any]
            mem["users"] = m.users
            mem["events"] = m.events
            mem["consumed"] = m.consumed
            mem["eventsPerSecond"] = m.pace
            mem["trackedUsers"] = m.trackedUsers
            mem["distinctUsersProduced"] = m.distinctUsersProduced
            mem["baselineRSSBytes"] = m.baselineRSS
            mem["rssBytes"] = m.rss
            mem["memoryRunPeakRSSBytes"] = m.peakRSS
            mem["bytesPerTrackedUser"] = m.bytesPerUser
            mem["engineInProcessBytesPerUser"] = m.engineBytesPerUser.map { $0 as Any } ?? NSNull()
            mem["definition"] = "bytesPerTrackedUser: daemon RSS growth / users it tracks, the example flows; engineInProcessBytesPerUser: camfa-bench engine with bench/memory-policies"
            object["memory"] = mem
        }
        if let s = soak {
            object["soak"] = ["eventsPerSecond": s.rate, "seconds": s.seconds, "produced": s.produced, "daemonKeptUp": s.caughtUp,
                              "eventTimeScale": s.timeScale, "consumed": s.consumed, "rssSettledBytes": s.settled, "rssHalfwayBytes": s.halfway,
                              "rssFinalBytes": s.final, "rssMaxBytes": s.maximum,
                              "rssSamples": s.samples.map { ["seconds": $0.seconds, "rssBytes": $0.rss] as [String: Any] }] as [String: Any]
        }
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}
