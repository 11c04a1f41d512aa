import Foundation

/// The daemon's health for /readyz and logs: safe to read from any thread.
public final class PipelineHealth: @unchecked Sendable {
    public struct Snapshot: Sendable, Equatable {
        /// Consuming and able to checkpoint.
        public var ready: Bool
        /// Why not, when not ready (no personal data).
        public var unhealthyReason: String?
    }

    private let lock = NSLock()
    private var started = false
    private var storage: String?
    private var partitions: [Int32: String] = [:]
    private var assignments = 0
    private var lag: [Int32: Int64] = [:]

    public init() {}

    public var snapshot: Snapshot {
        lock.withLock {
            let reason = storage ?? partitions.keys.sorted().first.map { "partition \($0): \(partitions[$0]!)" }
                ?? (started ? nil : "starting") ?? (assignments > 0 ? nil : "waiting for the first partition assignment")
            return Snapshot(ready: reason == nil, unhealthyReason: reason)
        }
    }

    /// How many assignments the pipeline has handled (restored); 0 until the group's first
    /// rebalance, which is when systemd's READY=1 and /readyz may first report ready.
    public var assignmentsHandled: Int { lock.withLock { assignments } }

    /// The owned partition with the largest consumer lag (events between the next offset
    /// to process and the high watermark), as last sampled; nil before the first sample.
    public var maxConsumerLag: (partition: Int32, lag: Int64)? {
        lock.withLock { lag.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }.map { ($0.key, $0.value) } }
    }

    /// Readiness with the lag rule of /readyz: not ready while a partition lags more than
    /// `maxLag` events (the instance would answer API mode with stale state).
    public func snapshot(maxLag: Int64) -> Snapshot {
        let s = snapshot
        guard s.ready, let worst = maxConsumerLag, worst.lag > maxLag else { return s }
        return Snapshot(ready: false, unhealthyReason: "partition \(worst.partition): consumer lag \(worst.lag) events exceeds \(maxLag)")
    }

    /// Sets (or, with nil, forgets) a partition's sampled lag.
    public func setConsumerLag(_ p: Int32, _ value: Int64?) { lock.withLock { lag[p] = value } }

    func setStarted(_ on: Bool) { lock.withLock { started = on } }
    func assignmentHandled() { lock.withLock { assignments += 1 } }
    func setStorageFault(_ reason: String?) { lock.withLock { storage = reason } }
    func setPartitionFault(_ p: Int32, _ reason: String?) { lock.withLock { partitions[p] = reason } }
}
