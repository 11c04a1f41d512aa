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

    func setStarted(_ on: Bool) { lock.withLock { started = on } }
    func assignmentHandled() { lock.withLock { assignments += 1 } }
    func setStorageFault(_ reason: String?) { lock.withLock { storage = reason } }
    func setPartitionFault(_ p: Int32, _ reason: String?) { lock.withLock { partitions[p] = reason } }
}
