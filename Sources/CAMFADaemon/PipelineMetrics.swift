import CAMFACore
import CAMFAKafka
import Dispatch
import Metrics

/// The pipeline's Prometheus metrics, recorded through swift-metrics (the backend is
/// bootstrapped by the executable; CAMFAServer's /metrics exposes it). Names:
///
/// - `camfa_events_consumed_total`, `camfa_events_processed_total`
/// - `camfa_dead_letters_total{reason}`: reason is the dead-letter reason's code
///   (empty, too-large, invalid, future, or the engine's rejection code)
/// - `camfa_decisions_total{flow,action,method}`: method is the first (preferred) method
///   of an mfa decision, `none` for allow and deny
/// - `camfa_processing_seconds` histogram: one event from record to decision
/// - `camfa_consumer_lag{partition}`, `camfa_live_keys{partition}`,
///   `camfa_checkpoint_age_seconds{partition}` gauges, sampled once a second
/// - `camfa_checkpoint_seconds` histogram: one checkpoint write
/// - `camfa_keys_evicted_total{keyspace}`: keys evicted at the live-key cap
///   (`engine.maxKeysPerKeyspace`; keyspace `users` for `engine.maxUsers`), all partitions
/// - `camfa_parked_records{partition}` gauge: records a user task holds while an event
///   waits for key tasks (README "Repartitioning")
///
/// The key tasks' poll loop records the same metrics as `camfa_key_task_…` (its partitions
/// are the repartition topic's), so neither loop's figures hide the other's. (A label would
/// not do: the Prometheus registry refuses a name both with and without labels.)
///
/// Only the poll thread calls it. Metric objects are created once (per flow, reason or
/// partition on first sight); per event there is one clock read pair, one histogram
/// record and one dictionary lookup per decision, no allocation.
public final class PipelineMetrics: @unchecked Sendable {
    /// `camfa_`, or `camfa_key_task_` for the key tasks' loop.
    private let prefix: String
    private let consumed: Counter
    private let processed: Counter
    private let processing: Timer
    private let checkpointSeconds: Timer
    private var deadLetters: [Substring: Counter] = [:]
    private var decisionCounters: [String: FlowDecisionCounters] = [:]
    private var flushed = (consumed: 0, processed: 0)

    struct PartitionGauges {
        let lag: Gauge
        let liveKeys: Gauge
        let checkpointAge: Gauge
        let parked: Gauge
        /// Uptime (ns) of the last durable checkpoint, or of the first sample after the
        /// partition was assigned.
        var lastCheckpoint: UInt64
    }
    private var partitions: [Int32: PartitionGauges] = [:]
    private var evictionCounters: [String: Counter] = [:]
    /// Uptime (ns) before which no further eviction warning is logged.
    private var nextEvictionWarning: UInt64 = 0
    private var nextSample: UInt64 = 0
    static let sampleInterval: UInt64 = 1_000_000_000

    /// - Parameter prefix: `camfa_key_task_` for the key tasks' loop.
    public init(prefix: String = "camfa_") {
        self.prefix = prefix
        consumed = Counter(label: prefix + "events_consumed_total")
        processed = Counter(label: prefix + "events_processed_total")
        processing = Timer(label: prefix + "processing_seconds")
        checkpointSeconds = Timer(label: prefix + "checkpoint_seconds")
    }

    /// Times one event's processing.
    @inline(__always)
    func time(_ body: () -> Void) {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        processing.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds &- start))
    }

    func deadLettered(reason: String) {
        let code = reason.prefix { $0 != ":" }
        if let c = deadLetters[code] { c.increment(); return }
        let c = Counter(label: prefix + "dead_letters_total", dimensions: [("reason", String(code))])
        deadLetters[code] = c
        c.increment()
    }

    func decided(_ decisions: [Decision]) {
        for d in decisions {
            let counters: FlowDecisionCounters
            if let c = decisionCounters[d.flow] { counters = c } else {
                counters = FlowDecisionCounters(flow: d.flow)
                decisionCounters[d.flow] = counters
            }
            counters.count(d)
        }
    }

    func checkpointed(_ partition: Int32, seconds: Double) {
        checkpointSeconds.recordSeconds(seconds)
        partitions[partition]?.lastCheckpoint = DispatchTime.now().uptimeNanoseconds
    }

    /// Per batch: moves the counters' deltas to the totals.
    func flush(_ counters: PipelineCounters) {
        if counters.consumed != flushed.consumed { consumed.increment(by: counters.consumed - flushed.consumed) }
        if counters.processed != flushed.processed { processed.increment(by: counters.processed - flushed.processed) }
        flushed = (counters.consumed, counters.processed)
    }

    /// Whether the once-a-second partition sample is due (and, if so, schedules the next).
    func sampleDue() -> Bool {
        let now = DispatchTime.now().uptimeNanoseconds
        guard now >= nextSample else { return false }
        nextSample = now + Self.sampleInterval
        return true
    }

    /// Updates the per-partition gauges; partitions no longer owned lose theirs, so a
    /// revoked partition's last lag does not linger in the scrape.
    func sample(_ owned: [Int32: (lag: Int64?, liveKeys: Int, parked: Int)], health: PipelineHealth) {
        let now = DispatchTime.now().uptimeNanoseconds
        for p in partitions.keys where owned[p] == nil {
            let g = partitions.removeValue(forKey: p)!
            g.lag.destroy()
            g.liveKeys.destroy()
            g.checkpointAge.destroy()
            g.parked.destroy()
            health.setConsumerLag(p, nil)
        }
        for (p, s) in owned {
            if partitions[p] == nil {
                let dims = [("partition", String(p))]
                partitions[p] = PartitionGauges(
                    lag: Gauge(label: prefix + "consumer_lag", dimensions: dims),
                    liveKeys: Gauge(label: prefix + "live_keys", dimensions: dims),
                    checkpointAge: Gauge(label: prefix + "checkpoint_age_seconds", dimensions: dims),
                    parked: Gauge(label: prefix + "parked_records", dimensions: dims), lastCheckpoint: now)
            }
            let g = partitions[p]!
            if let lag = s.lag { g.lag.record(lag) }
            health.setConsumerLag(p, s.lag)
            g.liveKeys.record(s.liveKeys)
            g.parked.record(s.parked)
            g.checkpointAge.record(Double(now &- g.lastCheckpoint) / 1e9)
        }
    }
}

extension PipelineMetrics {
    /// Counts evictions per keyspace; says whether a warning is due (at most one a minute,
    /// since a partition at its cap evicts a batch every few thousand events).
    func evicted(_ count: Int, keyspace: String) -> Bool {
        let c: Counter
        if let e = evictionCounters[keyspace] { c = e } else {
            c = Counter(label: prefix + "keys_evicted_total", dimensions: [("keyspace", keyspace)])
            evictionCounters[keyspace] = c
        }
        c.increment(by: count)
        let now = DispatchTime.now().uptimeNanoseconds
        guard now >= nextEvictionWarning else { return false }
        nextEvictionWarning = now + 60 * Self.sampleInterval
        return true
    }
}

/// One flow's decision counters, one per action and method, made on first use.
final class FlowDecisionCounters {
    let flow: String
    private var counters: [Counter?]
    private static let methods = MFAMethod.allCases
    private static let actions: [Decision.Action] = [.allow, .deny, .mfa]

    init(flow: String) {
        self.flow = flow
        counters = Array(repeating: nil, count: Self.actions.count * (Self.methods.count + 1))
    }

    func count(_ d: Decision) {
        let a = Self.actions.firstIndex(of: d.action)!
        let m = d.methods.first.flatMap { Self.methods.firstIndex(of: $0) }.map { $0 + 1 } ?? 0
        let i = a * (Self.methods.count + 1) + m
        if let c = counters[i] { c.increment(); return }
        let c = Counter(label: "camfa_decisions_total", dimensions: [
            ("flow", flow), ("action", d.action.rawValue), ("method", d.methods.first?.rawValue ?? "none"),
        ])
        counters[i] = c
        c.increment()
    }
}

extension Pipeline {
    /// Once per poll-loop iteration on the poll thread: counter deltas every time, the
    /// partition gauges and the readiness lag once a second. Lag is the cached high
    /// watermark (from the last fetch response, no broker round trip) minus the position.
    func observeTelemetry() {
        telemetry.flush(metrics)
        guard telemetry.sampleDue(), let consumer else { return }
        let topic = options.configuration.topics.input
        let tps = partitions.keys.map { TopicPartition(topic, $0) }
        let positions = (try? consumer.position(tps)) ?? [:]
        var owned: [Int32: (lag: Int64?, liveKeys: Int, parked: Int)] = [:]
        for tp in tps {
            var lag: Int64?
            if let position = positions[tp], position >= 0, let high = try? consumer.watermarks(tp, cached: true).high, high >= 0 {
                lag = max(0, high - position)
            }
            owned[tp.partition] = (lag, partitions[tp.partition]!.state.liveKeyCount, partitions[tp.partition]!.parked.count)
            reportEvictions(tp.partition)
        }
        telemetry.sample(owned, health: health)
    }

    private func reportEvictions(_ partition: Int32) {
        let evictions = partitions[partition]!.state.takeEvictions()
        let keyspaces = options.policySet.keyspaces
        for (i, n) in evictions.enumerated() where n > 0 {
            let (name, setting) = i == evictions.count - 1 ? ("users", "engine.maxUsers")
                : (i < keyspaces.count ? keyspaces[i].keyText : "keyspace \(i)", "engine.maxKeysPerKeyspace")
            if telemetry.evicted(n, keyspace: name) {
                logger.warning("live-key cap reached: the least recently updated keys are evicted", metadata: [
                    "partition": "\(partition)", "keyspace": "\(name)", "evicted": "\(n)", "setting": "\(setting)",
                ])
            }
        }
    }
}
