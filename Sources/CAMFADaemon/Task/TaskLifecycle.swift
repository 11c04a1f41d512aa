/// One task's ownership period (a task owns one input partition and its state), as a state
/// machine: the poll loop feeds it what happened (events processed, outputs acknowledged,
/// checkpoint passes, write results) and executes the steps it returns; the state and the
/// checkpoint payloads stay with the loop. Pure: no clock (times come in), no I/O.
///
/// The offsets, one name each (DESIGN.md, state and delivery):
/// - `processedNext`: just past every processed event; what a snapshot taken now covers.
/// - `committable`: just past the longest prefix whose outputs are all acknowledged.
/// - `checkpointed`: the next offset of the last durable checkpoint; a restart resumes
///   there, and the Kafka group offset is set to it (for lag monitoring only).
///
/// The invariant the machine keeps: a checkpoint goes to the writer only once
/// `committable` has reached its next offset, so the stored state never covers an event
/// whose MFA event could still be lost. A snapshot taken earlier is *held* meanwhile.
public struct TaskLifecycle: Sendable, Equatable {
    public enum Phase: Sendable, Equatable {
        case running
        /// Not processed: its records are ignored (never processed, never checkpointed) and
        /// it stays paused. `retryAt` (ms): a restore failure that clears by itself is
        /// retried then; nil: it needs the operator (corrupt checkpoint) or is fenced.
        case blocked(reason: String, retryAt: Int64?)
    }

    public enum Checkpoint: Sendable, Equatable {
        case idle
        /// Taken while outputs of the events it covers were in flight (at `since`, ms).
        case held(nextOffset: Int64, since: Int64)
        /// With the writer, not confirmed yet.
        case outstanding(nextOffset: Int64)
    }

    public enum Step: Sendable, Equatable {
        /// Take the state's changes (and the carried ones of a failed write) covering every
        /// event before `nextOffset`, and hand them to the writer.
        case takeAndSubmit(nextOffset: Int64)
        /// Take them as above and keep them until `submitHeld`.
        case takeAndHold(nextOffset: Int64)
        /// Hand the held checkpoint to the writer.
        case submitHeld
    }

    public enum WriteOutcome: Sendable, Equatable {
        case stored
        /// Its changes come back to the loop as the carry, merged in front of the next write.
        case failed
        /// A newer owner holds the partition: the state is stale and is dropped.
        case fenced
    }

    /// This ownership period's fencing token in the store.
    public let epoch: Int64
    public private(set) var phase: Phase
    public private(set) var checkpoint: Checkpoint = .idle
    public private(set) var offsets: OffsetTracker
    public private(set) var schedule: CheckpointSchedule
    public private(set) var checkpointed: Int64?
    /// The changes of a failed write wait (with the loop) to go in front of the next write.
    public private(set) var carrying = false

    /// A period that starts from a checkpoint (`checkpointed`) or from nothing (nil).
    public init(epoch: Int64, checkpointed: Int64?, schedule: CheckpointSchedule) {
        self.epoch = epoch
        self.phase = .running
        self.offsets = OffsetTracker(startingAt: checkpointed)
        self.schedule = schedule
        self.checkpointed = checkpointed
    }

    /// A period whose restore failed: empty state, never half-loaded.
    public init(blocked reason: String, retryAt: Int64?, schedule: CheckpointSchedule) {
        self.epoch = 0
        self.phase = .blocked(reason: reason, retryAt: retryAt)
        self.offsets = OffsetTracker()
        self.schedule = schedule
    }

    public var isRunning: Bool { phase == .running }

    public var blockedReason: String? {
        if case .blocked(let reason, _) = phase { return reason }
        return nil
    }

    public var committable: Int64? { offsets.committable }
    public var processedNext: Int64? { offsets.processedNext }
    public var inFlight: Int { offsets.inFlight }

    public var isHolding: Bool {
        if case .held = checkpoint { return true }
        return false
    }

    // MARK: Events

    /// An event was processed; its offset is done once its `outputs` are acknowledged.
    public mutating func processed(offset: Int64, outputs: Int) {
        offsets.processed(offset: offset, outputs: outputs)
        schedule.processed()
    }

    public mutating func acknowledged(offset: Int64) {
        offsets.acknowledged(offset: offset)
    }

    /// The regular checkpoint pass at `now`: a held checkpoint whose outputs have all
    /// landed goes to the writer; else a due one is taken (`retrying`: storage is failing
    /// and this is the pass that retries it). `stateChanged`: the state has changes not
    /// taken yet. nil: nothing to do.
    public mutating func checkpointPass(now: Int64, retrying: Bool, stateChanged: Bool) -> Step? {
        guard isRunning else { return nil }
        switch checkpoint {
        case .outstanding: return nil
        case .held(let next, _):
            guard let done = offsets.committable, done >= next else { return nil }
            checkpoint = .outstanding(nextOffset: next)
            return .submitHeld
        case .idle: break
        }
        guard retrying || carrying || schedule.isDue(now: now), let next = offsets.processedNext else { return nil }
        schedule.taken(now: now)
        if !carrying, !stateChanged, checkpointed == next { return nil }
        carrying = false
        if offsets.inFlight > 0 {
            checkpoint = .held(nextOffset: next, since: now)
            return .takeAndHold(nextOffset: next)
        }
        checkpoint = .outstanding(nextOffset: next)
        return .takeAndSubmit(nextOffset: next)
    }

    /// The write of this period's outstanding checkpoint finished. False when there is none
    /// (a result of an earlier period, or after the loop forgot it): nothing changes.
    @discardableResult
    public mutating func writeCompleted(epoch: Int64, _ outcome: WriteOutcome) -> Bool {
        guard epoch == self.epoch, case .outstanding(let next) = checkpoint else { return false }
        checkpoint = .idle
        switch outcome {
        case .stored: checkpointed = next
        case .failed: carrying = true
        case .fenced:
            carrying = false
            phase = .blocked(reason: "fenced", retryAt: nil)
        }
        return true
    }

    // MARK: The final checkpoint (revoke, shutdown), after the outputs were given time

    /// First step of the final checkpoint: a held checkpoint whose outputs have landed goes
    /// first, even when later outputs are still in flight (the next owner replays less).
    public mutating func finalHeld() -> Step? {
        guard isRunning, case .held(let next, _) = checkpoint, let done = offsets.committable, done >= next else { return nil }
        checkpoint = .outstanding(nextOffset: next)
        return .submitHeld
    }

    public enum FinalTake: Sendable, Equatable {
        case none
        /// Outputs are still unacknowledged: no final checkpoint (the next owner replays
        /// from the last one, and subscribers drop the duplicates by id).
        case unacknowledgedOutputs
        case take(Step)
    }

    /// Second step: everything processed, when every output has landed and there is
    /// anything new.
    public mutating func finalTake(now: Int64, stateChanged: Bool) -> FinalTake {
        guard isRunning, let next = offsets.committable else { return .none }
        if case .outstanding = checkpoint { return .none }
        if offsets.inFlight > 0 { return .unacknowledgedOutputs }
        if !carrying, !stateChanged, checkpointed == next { return .none }
        schedule.taken(now: now)
        carrying = false
        checkpoint = .outstanding(nextOffset: next)
        return .take(.takeAndSubmit(nextOffset: next))
    }

    // MARK: Pausing and restore retries

    /// Whether the loop should keep the partition paused: blocked, or a checkpoint held
    /// longer than `stallAfter` ms (an output the broker keeps refusing), so the stored
    /// state cannot fall behind without bound and the stall shows as lag.
    public func wantsPause(now: Int64, stallAfter: Int64) -> Bool {
        if !isRunning { return true }
        if case .held(_, let since) = checkpoint { return since <= now - stallAfter }
        return false
    }

    /// The next try of a retried restore, when the one that succeeded could not be started.
    public mutating func postponeRestore(until at: Int64) {
        if case .blocked(let reason, _?) = phase { phase = .blocked(reason: reason, retryAt: at) }
    }

    /// A blocked period whose restore is due for another try at `now`.
    public func restoreRetryDue(now: Int64) -> Bool {
        if case .blocked(_, let at?) = phase { return at <= now }
        return false
    }
}
