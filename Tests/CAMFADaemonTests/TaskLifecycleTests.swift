import CAMFADaemon
import CAMFATestSupport
import Testing

/// The task lifecycle (issue 24 item 1) alone: what the poll loop may do with a task's
/// checkpoints, without Kafka, a store or a clock.
@Suite struct TaskLifecycleTests {
    static func schedule(interval: Int64 = 1_000, events: Int = 1_000_000) -> CheckpointSchedule {
        CheckpointSchedule(interval: interval, events: events, now: 0)
    }

    @Test func aCheckpointTakenWithOutputsInFlightIsHeldUntilTheyLand() {
        var t = TaskLifecycle(epoch: 7, checkpointed: 100, schedule: Self.schedule())
        t.processed(offset: 100, outputs: 0)
        t.processed(offset: 101, outputs: 1)
        do { let r = t.checkpointPass(now: 500, retrying: false, stateChanged: true); #expect(r == nil, "not due yet") }
        do { let r = t.checkpointPass(now: 1_000, retrying: false, stateChanged: true); #expect(r == .takeAndHold(nextOffset: 102)) }
        #expect(t.checkpoint == .held(nextOffset: 102, since: 1_000))
        t.processed(offset: 102, outputs: 0)  // consumption goes on
        do { let r = t.checkpointPass(now: 1_100, retrying: false, stateChanged: true); #expect(r == nil, "101's output is in flight") }
        #expect(!t.wantsPause(now: 1_900, stallAfter: 1_000))
        #expect(t.wantsPause(now: 2_000, stallAfter: 1_000), "held a whole interval: paused")
        t.acknowledged(offset: 101)
        #expect(t.committable == 103)
        do { let r = t.checkpointPass(now: 2_000, retrying: false, stateChanged: true); #expect(r == .submitHeld) }
        #expect(t.checkpoint == .outstanding(nextOffset: 102))
        do { let r = t.checkpointPass(now: 9_000, retrying: false, stateChanged: true); #expect(r == nil, "one write at a time") }
        do { let r = t.writeCompleted(epoch: 7, .stored); #expect(r) }
        #expect(t.checkpointed == 102, "what the held snapshot covered, not what was processed since")
        #expect(!t.wantsPause(now: 9_000, stallAfter: 1_000))
    }

    @Test func aFailedWriteIsCarriedIntoTheNextWhateverTheSchedule() {
        var t = TaskLifecycle(epoch: 1, checkpointed: nil, schedule: Self.schedule())
        t.processed(offset: 0, outputs: 0)
        do { let r = t.checkpointPass(now: 1_000, retrying: false, stateChanged: true); #expect(r == .takeAndSubmit(nextOffset: 1)) }
        do { let r = t.writeCompleted(epoch: 1, .failed); #expect(r) }
        #expect(t.carrying && t.checkpointed == nil)
        // Nothing new and not due: the carry alone makes the next pass write.
        do { let r = t.checkpointPass(now: 1_001, retrying: false, stateChanged: false); #expect(r == .takeAndSubmit(nextOffset: 1)) }
        #expect(!t.carrying)
        do { let r = t.writeCompleted(epoch: 1, .stored); #expect(r) }
        #expect(t.checkpointed == 1)
        // Nothing new since: no write, and the schedule starts again.
        do { let r = t.checkpointPass(now: 5_000, retrying: true, stateChanged: false); #expect(r == nil) }
    }

    @Test func aFencedTaskIsBlockedAndAnEarlierPeriodsResultChangesNothing() {
        var t = TaskLifecycle(epoch: 5, checkpointed: 10, schedule: Self.schedule())
        t.processed(offset: 10, outputs: 0)
        do { let r = t.writeCompleted(epoch: 5, .stored); #expect(!r, "nothing outstanding") }
        do { let r = t.checkpointPass(now: 1_000, retrying: false, stateChanged: true); #expect(r == .takeAndSubmit(nextOffset: 11)) }
        do { let r = t.writeCompleted(epoch: 4, .fenced); #expect(!r, "another period's result") }
        #expect(t.isRunning)
        do { let r = t.writeCompleted(epoch: 5, .fenced); #expect(r) }
        #expect(t.blockedReason == "fenced" && !t.carrying)
        #expect(t.wantsPause(now: 0, stallAfter: 1_000))
        t.processed(offset: 11, outputs: 0)
        do { let r = t.checkpointPass(now: 10_000, retrying: true, stateChanged: true); #expect(r == nil) }
        do { let h = t.finalHeld(), f = t.finalTake(now: 10_000, stateChanged: true); #expect(h == nil && f == .none) }
        #expect(!t.restoreRetryDue(now: .max), "fencing is not retried")
    }

    @Test func theFinalCheckpointWritesTheLandedHeldOneFirstAndSkipsWhatIsInFlight() {
        var t = TaskLifecycle(epoch: 1, checkpointed: nil, schedule: Self.schedule())
        t.processed(offset: 0, outputs: 1)
        do { let r = t.checkpointPass(now: 1_000, retrying: false, stateChanged: true); #expect(r == .takeAndHold(nextOffset: 1)) }
        t.processed(offset: 1, outputs: 1)
        t.acknowledged(offset: 0)
        do { let r = t.finalHeld(); #expect(r == .submitHeld) }
        do { let r = t.writeCompleted(epoch: 1, .stored); #expect(r) }
        do { let r = t.finalTake(now: 2_000, stateChanged: true); #expect(r == .unacknowledgedOutputs) }
        t.acknowledged(offset: 1)
        do { let r = t.finalTake(now: 2_000, stateChanged: true); #expect(r == .take(.takeAndSubmit(nextOffset: 2))) }
        do { let r = t.writeCompleted(epoch: 1, .stored); #expect(r) }
        do { let r = t.finalTake(now: 2_000, stateChanged: false); #expect(r == .none, "nothing new") }
    }

    @Test func aTransientRestoreFailureIsRetriedAndCanBePostponed() {
        var t = TaskLifecycle(blocked: "restore failed: busy", retryAt: 3_000, schedule: Self.schedule())
        #expect(!t.isRunning && t.wantsPause(now: 0, stallAfter: 1_000))
        #expect(!t.restoreRetryDue(now: 2_999) && t.restoreRetryDue(now: 3_000))
        t.postponeRestore(until: 6_000)
        #expect(!t.restoreRetryDue(now: 5_999) && t.restoreRetryDue(now: 6_000))
        #expect(t.blockedReason == "restore failed: busy")
        let corrupt = TaskLifecycle(blocked: "restore failed: corrupt", retryAt: nil, schedule: Self.schedule())
        #expect(!corrupt.restoreRetryDue(now: .max))
    }

    /// Random runs of a task against a model of the loop's payloads: no checkpoint reaches
    /// the writer ahead of the acknowledged outputs, and every event below `checkpointed`
    /// is in a stored write, through any number of failures and held snapshots.
    @Test(arguments: 0..<20)
    func noWriteRunsAheadOfTheOutputsAndNoTakenEventIsLost(seed: Int) {
        var rng = SeededRandom(seed: UInt64(seed) &* 7_919 &+ 3)
        var t = TaskLifecycle(epoch: 1, checkpointed: nil, schedule: Self.schedule(interval: 50, events: 1 + rng.int(30)))
        var next: Int64 = 0, now: Int64 = 0
        var unacknowledged: [Int64] = []  // one entry per output in flight
        var untaken: [Int64] = [], carry: [Int64] = [], held: [Int64]? = nil, outstanding: [Int64]? = nil
        var stored = Set<Int64>()
        var writes = 0, holds = 0, failures = 0
        func take() -> [Int64] { defer { untaken = []; carry = [] }; return carry + untaken }
        func run(_ step: TaskLifecycle.Step) {
            switch step {
            case .takeAndHold:
                held = take()
                holds += 1
            case .takeAndSubmit(let n):
                #expect(t.committable.map { $0 >= n } == true, "submitted \(n) past committable \(String(describing: t.committable))")
                outstanding = take()
            case .submitHeld:
                if case .outstanding(let n) = t.checkpoint { #expect(t.committable.map { $0 >= n } == true) }
                outstanding = held
                held = nil
            }
        }
        for _ in 0..<3_000 {
            now += Int64(rng.int(20))
            switch rng.int(8) {
            case 0, 1:
                let outputs = rng.int(3)
                t.processed(offset: next, outputs: outputs)
                untaken.append(next)
                unacknowledged += Array(repeating: next, count: outputs)
                next += 1
            case 2, 3, 4:
                if !unacknowledged.isEmpty { t.acknowledged(offset: unacknowledged.remove(at: rng.int(unacknowledged.count))) }
            case 5:
                if let step = t.checkpointPass(now: now, retrying: rng.int(4) == 0, stateChanged: !untaken.isEmpty) { run(step) }
            default:
                guard let payload = outstanding else { continue }
                outstanding = nil
                writes += 1
                if rng.int(4) == 0 {
                    failures += 1
                    do { let r = t.writeCompleted(epoch: 1, .failed); #expect(r) }
                    carry = payload + carry
                } else {
                    do { let r = t.writeCompleted(epoch: 1, .stored); #expect(r) }
                    stored.formUnion(payload)
                }
            }
            #expect((held == nil) == !t.isHolding)
            if let c = t.checkpointed {
                #expect(c <= (t.committable ?? 0))
                #expect((0..<c).allSatisfy { stored.contains($0) }, "seed \(seed): an event below checkpointed \(c) was never stored")
            }
        }
        #expect(writes > 5 && holds > 0 && failures > 0, "the run exercised writes \(writes), holds \(holds), failures \(failures)")
        // Once the broker has acknowledged everything and the store works again, nothing
        // new arriving: the passes alone make every processed event durable (a failed
        // write's carry is not left waiting for new events).
        for o in unacknowledged { t.acknowledged(offset: o) }
        t.processed(offset: next, outputs: 0)
        untaken.append(next)
        next += 1
        if outstanding == nil, let step = t.checkpointPass(now: now, retrying: true, stateChanged: true) { run(step) }
        if held != nil, let step = t.checkpointPass(now: now, retrying: true, stateChanged: true) { run(step) }
        var failLast = true  // the last write fails: its carry alone must bring the next one
        for _ in 0..<10 {
            now += 1_000
            if let payload = outstanding {
                outstanding = nil
                if failLast {
                    _ = t.writeCompleted(epoch: 1, .failed)
                    carry = payload + carry
                    failLast = false
                } else {
                    _ = t.writeCompleted(epoch: 1, .stored)
                    stored.formUnion(payload)
                }
            }
            if let step = t.checkpointPass(now: now, retrying: false, stateChanged: !untaken.isEmpty) { run(step) }
        }
        #expect(t.checkpointed == next, "seed \(seed): checkpointed \(String(describing: t.checkpointed)) of \(next) processed")
        #expect((0..<next).allSatisfy { stored.contains($0) })
    }
}
