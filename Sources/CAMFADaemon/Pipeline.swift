import CAMFACore
import CAMFADelivery
import CAMFAFactors
import CAMFAEnrich
import CAMFAKafka
import CAMFAStore
import Foundation
import Logging

/// The event flow: Kafka in → decode → enrich → engine → MFA events and dead letters out.
///
/// One thread, the poll thread, owns the consumer, every partition's state and this
/// object's mutable fields; `run()` is that thread's body and the rebalance callbacks
/// arrive on it from inside `poll`. Messages are processed synchronously in batches: no
/// hop to another thread or task per message.
///
/// Checkpoints (DESIGN.md, state and delivery): when a partition's checkpoint is due, its
/// state is taken at once (`takeChangeSnapshot`, incremental) with the next offset after
/// every processed event (`tracker.processedNext`). It goes to the writer only when every
/// output of those events is acknowledged (`tracker.committable` has reached it), so the
/// stored state never includes an event whose MFA event could still be lost; meanwhile
/// the snapshot is *held* and consumption goes on. Only a snapshot held longer than a
/// checkpoint interval (an output the broker keeps refusing) pauses the partition, so the
/// stored state cannot fall behind without bound and the stall shows as lag. The write
/// runs on the checkpoint writer's queue; the Kafka offset commit follows a successful
/// checkpoint and only serves lag monitoring. Those decisions are each task's
/// `TaskLifecycle` (Task/); this class executes its steps.
public final class Pipeline: KafkaRebalanceDelegate, @unchecked Sendable {
    public struct Options: Sendable {
        public var configuration: Configuration
        public var policySet: PolicySet
        public var enrichment: EnrichmentResources?
        /// How long shutdown may take before it gives up on pending deliveries.
        public var shutdownTimeout: Double = 10
        /// Offsets are committed at most this often (they are for lag monitoring and restart).
        public var commitInterval: Double = 1
        public var maxBatch = 1_000
        /// Keys challenge ids and authenticates camfa's own input records.
        public var secret: DaemonSecret
        /// The daemon's clock (epoch ms). It alone bounds how far ahead an event may be:
        /// a producer chooses both `requestDate` and the record's CreateTime.
        public var clock: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }
        /// Sends email and SMS codes (`factors.email`, `factors.sms`); nil: none.
        public var codeSender: CodeSender?
        /// Which tasks this pipeline runs (README "Repartitioning").
        public var role: Role = .users
        /// Where other instances' tasks are (`topics.owners`), and where this one's are
        /// announced; nil: requests for users processed elsewhere answer not-owned.
        public var owners: OwnerDirectory?
        public init(configuration: Configuration, policySet: PolicySet, enrichment: EnrichmentResources?, secret: DaemonSecret) {
            self.configuration = configuration
            self.secret = secret
            self.policySet = policySet
            self.enrichment = enrichment
        }
    }

    public enum Role: Sendable, Equatable {
        /// Tasks of the input topic, keyed by user: they decide. With
        /// `topics.repartition`, statistics of other keys come from the key tasks.
        case users
        /// Tasks of the repartition topic: they count the statistics of other keys and
        /// reply into `replyTopic` (the input topic), to the partition of the event.
        case keys(replyTopic: String)
    }

    /// Decisions that issued a challenge, for `camfa dev`'s live view and tests.
    public var onChallenge: (@Sendable (Decision, UEBAEvent) -> Void)?
    /// The key tasks' pipeline of this daemon (README "Repartitioning"): reloaded with this
    /// one, first. Set before `run()`.
    public var keyTasks: Pipeline?
    /// systemd's READY/WATCHDOG (SystemdNotifier.swift); set before `run()`.
    public var notifier: SystemdNotifier?

    public internal(set) var options: Options
    let logger: Logger
    var engine: Engine
    /// Decoding, limits, the future bound and enrichment (shared with `camfa replay`).
    let intake: Intake
    let stop = StopSignal()
    let metrics = PipelineCounters()
    public let health = PipelineHealth()
    let reloads = PolicyReloadSlot()
    let telemetry: PipelineMetrics
    let records: RecordAuthenticator
    /// Seals factor secrets and codes (FactorSeal).
    let seal: FactorSeal

    var consumer: KafkaConsumer!
    var producer: KafkaProducer!
    /// The batch being handled and the record's index in it, so a record can be retained.
    var handling: (batch: KafkaBatch, index: Int)?
    /// Users role with `topics.repartition`: the topic and its partition count.
    var repartition: (topic: String, partitions: Int32)?
    /// Repartition requests in flight, by delivery token: sent again when delivery fails.
    var requestsInFlight: [UInt64: DeliveryLedger.Output] = [:]
    /// Repartition requests the producer could not queue yet.
    var requestsUnsent: [DeliveryLedger.Output] = []
    var partitions: [Int32: PartitionRuntime] = [:]
    var ledger: DeliveryLedger!
    private var lastCommit = Date.distantPast
    private var committed: [Int32: Int64] = [:]
    private var writer: CheckpointWriter!
    /// Set while checkpoint writes fail for a reason other than fencing: every partition
    /// is paused, and writes are retried every second.
    private var storageFault: StoreError?
    private var lastStorageAttempt = Date.distantPast
    /// Partitions this pipeline has paused (for any reason), to resume exactly those.
    private var paused: Set<Int32> = []
    private var slowestTake: Double = 0
    /// API mode, user status and MFA results (PipelineRequests.swift).
    let mailbox = PipelineMailbox()
    /// Face verdicts this instance processed, by signature, while their signatures are fresh.
    let verdictReplays = SignatureReplays()
    /// Request records written to the input topic, by delivery token → request id.
    private var requestProduces: [UInt64: String] = [:]
    /// Requests whose record is in one of our partitions and not processed yet: answered
    /// `not-owned` if the partition goes before (its next owner processes the record).
    private var awaiting: [String: Int32] = [:]
    /// The input topic's partition count, to find a user's partition; nil: fetch again.
    private var inputPartitionCount: Int32?
    /// Failed metadata reads are retried at most once a second: each blocks the poll loop.
    private var lastPartitionCountAttempt = Date.distantPast

    /// A task's data; what it may do with it is `lifecycle`'s (Task/TaskLifecycle.swift).
    struct PartitionRuntime {
        var state: PartitionState
        var lifecycle: TaskLifecycle
        /// The checkpoint `lifecycle` holds (`.held`): it goes to the writer once the outputs
        /// of the events it covers are acknowledged, and meanwhile consumption goes on.
        var held: PendingCheckpoint?
        /// The changes of a failed write (`lifecycle.carrying`): merged in front of the next
        /// write, so none are lost.
        var carry: PartitionChanges?
        /// Records read and not decided yet, while an event waits for readings.
        var parked = ParkedRecords<RetainedRecord>()
        /// Full (`engine.maxParkedRecords`/`maxParkedBytes`): records from this offset on are
        /// not parked but read again later; replies are still taken, since they are what
        /// lets the front go. (Pausing would cut the partition off from its own replies.)
        var skippingFrom: Int64?
        /// After the seek back to `skippingFrom`: the batch's records before it are stale.
        var seekingTo: Int64?
        /// The watermark as of the last record read: ahead of `state.watermark` while
        /// events are parked (lateness is judged when an event is read).
        var readWatermark = Int64.min
    }

    typealias Output = DeliveryLedger.Output

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
        self.engine = Engine(policySet: options.policySet, challengeKey: options.secret.challengeKey)
        self.records = options.secret.records
        self.seal = options.secret.factorSeal
        if case .keys = options.role { telemetry = PipelineMetrics(prefix: "camfa_key_task_") } else { telemetry = PipelineMetrics() }
        let clock = options.clock
        self.intake = Intake(configuration: options.configuration, enrichment: options.enrichment, clock: { clock() })
    }

    /// Asks the poll loop to finish its batch, flush, commit and return.
    public func requestStop() { stop.set() }
    public var counters: PipelineCounters { metrics }

    var kafkaConfig: KafkaConfig {
        let c = options.configuration
        // First start of a group: read from the beginning, so events produced before the
        // daemon came up are judged rather than skipped. Operators may override it.
        var props = c.kafka.properties
        if props["auto.offset.reset"] == nil { props["auto.offset.reset"] = "earliest" }
        return KafkaConfig(bootstrapServers: c.kafka.bootstrap, props.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    }

    /// The poll thread's body. Returns after a requested stop, once outputs are flushed and
    /// offsets committed (or the shutdown timeout passed).
    public func run() throws {
        let c = options.configuration
        let changelog = try c.topics.changelog.map { topic throws(KafkaError) in
            try ChangelogTopic(topic: topic, config: kafkaConfig, logger: logger)
        }
        writer = CheckpointWriter(store: try openStore(c.stateDir), changelog: changelog)
        producer = try KafkaProducer(config: kafkaConfig, logger: logger)
        ledger = DeliveryLedger(producer: producer, deadLetterTopic: c.topics.deadLetter, logger: logger)
        consumer = try KafkaConsumer(config: kafkaConfig, groupID: c.kafka.groupId, delegate: self, logger: logger)
        try consumer.subscribe([c.topics.input])
        try startRepartition()
        logger.info("camfa pipeline started", metadata: [
            "input": "\(c.topics.input)", "output": "\(c.topics.output)", "group": "\(c.kafka.groupId)",
            "flows": "\(options.policySet.flows.count)", "policies": "\(options.policySet.policies.count)",
        ])
        health.setStarted(true)
        let wakeable = consumer!
        mailbox.open(wake: { wakeable.wakeup() })
        let batch = KafkaBatch(capacity: options.maxBatch)
        while !stop.isSet {
            notifier?.tick(health)
            applyPendingReload()
            _ = consumer.poll(into: batch, maxMessages: options.maxBatch, timeoutMs: 100)
            for (i, record) in batch.records.enumerated() {
                handling = (batch, i)
                telemetry.time { handle(record) }
            }
            handling = nil
            if repartition != nil { afterBatch() }
            serveRequests()
            for event in batch.events {
                if case .error(let e, _) = event { logger.warning("kafka: \(e)") }
            }
            batch.release()
            serve(producer.poll(timeoutMs: 0))
            sendUnsentRequests()
            completeCheckpoints()
            scheduleCheckpoints()
            applyPauses()
            observeTelemetry()
            if Date().timeIntervalSince(lastCommit) >= options.commitInterval {
                commit(async: true)
                // Once a second at debug level, for `camfa-bench e2e` (counts only, no per-event work).
                logger.debug("progress", metadata: ["consumed": "\(metrics.consumed)", "processed": "\(metrics.processed)", "users": "\(partitions.values.reduce(0) { $0 + $1.state.userCount })",
                                                    "tasks": "\(options.role == .users ? "users" : "keys")"])
            }
        }
        shutdown(batch)
    }

    /// Opens the state store. Several daemons sharing a directory can collide while one of
    /// them switches a new database to WAL mode (`.busy`): that clears, so it is retried.
    private func openStore(_ directory: String) throws -> CheckpointStore {
        var attempt = 0
        while true {
            do {
                return try CheckpointStore(directory: directory)
            } catch where error.code == .busy && attempt < 20 {
                attempt += 1
                Thread.sleep(forTimeInterval: 0.25)
            } catch {
                logger.error("cannot open the state store", metadata: ["code": "\(error.code.rawValue)", "error": "\(error.message)"])
                throw DaemonError(code: .stateStore, message: "cannot open the state store in \(directory): \(error)")
            }
        }
    }

    /// The longest time the poll thread spent taking one partition's changes, in seconds.
    public var longestCheckpointTake: Double { slowestTake }

    // MARK: - Checkpoints (poll thread)

    private static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Hands due (and retried) checkpoints to the writer.
    private func scheduleCheckpoints() {
        retryRestores()
        let now = Self.nowMs()
        let retrying = storageFault != nil
        if retrying, Date().timeIntervalSince(lastStorageAttempt) < 1 { return }
        for p in partitions.keys.sorted() {
            let changed = partitions[p]!.state.pendingChangeCount > 0
            guard let step = partitions[p]!.lifecycle.checkpointPass(now: now, retrying: retrying, stateChanged: changed) else { continue }
            if retrying { lastStorageAttempt = Date() }
            perform(step, p)
        }
    }

    /// Executes a checkpoint step of partition `p`'s lifecycle; a write done on this thread
    /// (`now`: revoke, shutdown) is completed before it returns.
    private func perform(_ step: TaskLifecycle.Step, _ p: Int32, now: Bool = false) {
        let checkpoint: PendingCheckpoint
        switch step {
        case .takeAndHold(let next):
            partitions[p]!.held = takeCheckpoint(p, nextOffset: next)
            return
        case .takeAndSubmit(let next):
            checkpoint = takeCheckpoint(p, nextOffset: next)
        case .submitHeld:
            checkpoint = partitions[p]!.held!
            partitions[p]!.held = nil
        }
        if now { complete(writer.writeNow(checkpoint)) } else { writer.submit(checkpoint) }
    }

    /// Takes partition `p`'s changes (plus any failed ones) as one write, covering every
    /// processed event. Only the snapshot is taken here; encoding runs on the writer's thread.
    private func takeCheckpoint(_ p: Int32, nextOffset: Int64) -> PendingCheckpoint {
        let start = DispatchTime.now().uptimeNanoseconds
        let snapshot = partitions[p]!.state.takeChangeSnapshot()
        let carry = partitions[p]!.carry
        partitions[p]!.carry = nil
        slowestTake = max(slowestTake, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return PendingCheckpoint(
            partition: PartitionID(topic: options.configuration.topics.input, partition: p), epoch: partitions[p]!.lifecycle.epoch,
            nextOffset: nextOffset, carry: carry, snapshot: snapshot)
    }

    private func completeCheckpoints() {
        for c in writer.takeCompletions() { complete(c) }
    }

    private func complete(_ c: CheckpointWriter.Completion) {
        let outcome: TaskLifecycle.WriteOutcome = c.error == nil ? .stored : c.error!.code == .fenced ? .fenced : .failed
        // A result for an earlier ownership period of the partition: nothing to update.
        guard partitions[c.partition]?.lifecycle.writeCompleted(epoch: c.epoch, outcome) == true else {
            if let error = c.error, error.code == .fenced {
                logger.warning("checkpoint of an ended ownership period refused: the partition is fenced by a newer owner", metadata: [
                    "partition": "\(c.partition)", "epoch": "\(c.epoch)",
                ])
            }
            return
        }
        if let rebaseError = c.rebaseError {
            logger.warning("rewriting the partition's checkpoint base failed; its rows stay on top of the old base", metadata: [
                "partition": "\(c.partition)", "error": "\(rebaseError)",
            ])
        } else if let seconds = c.rebaseSeconds {
            logger.debug("checkpoint base rewritten", metadata: ["partition": "\(c.partition)", "seconds": "\(seconds)"])
        }
        guard let error = c.error else {
            telemetry.checkpointed(c.partition, seconds: c.seconds)
            if storageFault != nil {
                storageFault = nil
                health.setStorageFault(nil)
                logger.notice("checkpoint storage recovered; consumption resumed", metadata: ["partition": "\(c.partition)"])
            }
            return
        }
        if error.code == .fenced {
            fence(c.partition, error)
            return
        }
        partitions[c.partition]!.carry = c.failed
        storageFailed(error)
    }

    /// Another owner has a newer epoch for the partition: our state is stale, drop it.
    private func fence(_ p: Int32, _ error: StoreError) {
        logger.error("partition fenced by a newer owner in the state store; its state is dropped", metadata: [
            "partition": "\(p)", "error": "\(error.message)",
        ])
        partitions[p]!.state = PartitionState(policySet: options.policySet)
        partitions[p]!.carry = nil
        partitions[p]!.held = nil
    }

    private func storageFailed(_ error: StoreError) {
        lastStorageAttempt = Date()
        if storageFault == nil {
            logger.error("checkpoint storage failed; consumption paused until it recovers", metadata: [
                "code": "\(error.code.rawValue)", "error": "\(error.message)",
            ])
        }
        storageFault = error
        health.setStorageFault("state store \(error.code.rawValue): \(error.message)")
    }

    /// Pauses and resumes partitions so that exactly those with a reason are paused.
    private func applyPauses() {
        let input = options.configuration.topics.input
        var want: Set<Int32> = []
        let now = Self.nowMs(), stallAfter = options.configuration.checkpoint.interval
        for (p, rt) in partitions where storageFault != nil || rt.lifecycle.wantsPause(now: now, stallAfter: stallAfter) {
            want.insert(p)
        }
        let pause = want.subtracting(paused), resume = paused.subtracting(want)
        if !pause.isEmpty {
            do {
                try consumer.pause(pause.sorted().map { TopicPartition(input, $0) })
                paused.formUnion(pause)
            } catch { logger.warning("pause failed: \(error)") }
        }
        if !resume.isEmpty {
            do {
                try consumer.resume(resume.sorted().map { TopicPartition(input, $0) })
                paused.subtract(resume)
            } catch { logger.warning("resume failed: \(error)") }
        }
    }

    /// Writes a final checkpoint of each partition (revoke, shutdown) on this thread, after
    /// their outputs landed. Returns the partitions whose state is durable up to their
    /// committable offset.
    private func checkpointNow(_ list: [Int32]) {
        writer.barrier()
        completeCheckpoints()
        let now = Self.nowMs()
        for p in list.sorted() where partitions[p] != nil {
            if let step = partitions[p]!.lifecycle.finalHeld() { perform(step, p, now: true) }
            let changed = partitions[p]!.state.pendingChangeCount > 0
            switch partitions[p]!.lifecycle.finalTake(now: now, stateChanged: changed) {
            case .none: continue
            case .unacknowledgedOutputs:
                logger.warning("partition still has unacknowledged outputs; its final checkpoint is skipped", metadata: ["partition": "\(p)"])
            case .take(let step):
                perform(step, p, now: true)
                if partitions[p]!.lifecycle.carrying {
                    logger.error("final checkpoint failed; the next owner resumes from the previous checkpoint", metadata: ["partition": "\(p)"])
                }
            }
        }
    }

    private func shutdown(_ batch: KafkaBatch) {
        let deadline = Date().addingTimeInterval(options.shutdownTimeout)
        mailbox.close(reason: "the pipeline is stopping")
        batch.release()
        // Undecided records are read again after a restart; their messages must be back
        // with librdkafka before the consumer closes.
        for p in partitions.keys { partitions[p]!.parked.removeAll() }
        drain(until: deadline.addingTimeInterval(-2))
        checkpointNow(Array(partitions.keys))
        commit(async: false)
        if !ledger.isEmpty {
            logger.error("shutdown: \(ledger.inFlight.count) outputs not acknowledged in time; their events will be processed again after restart")
        }
        // Before close: its revoke callback forgets the partitions.
        let offsets = committed.keys.sorted().map { "\($0):\(committed[$0]!)" }.joined(separator: ",")
        let closed = consumer.close(timeoutSeconds: max(1, deadline.timeIntervalSinceNow))
        if !closed { logger.warning("consumer close did not finish in time") }
        _ = try? producer.flush(timeoutMs: 1000)
        writer.barrier()
        writer.store.close()
        health.setStarted(false)
        logger.info("camfa pipeline stopped", metadata: [
            "consumed": "\(metrics.consumed)", "processed": "\(metrics.processed)", "deadLettered": "\(metrics.deadLettered)",
            "committed": "\(offsets)",
        ])
    }

    /// Serves delivery reports until nothing is in flight or the deadline passes.
    private func drain(until deadline: Date) {
        while !ledger.isEmpty, Date() < deadline {
            serve(producer.poll(timeoutMs: 50))
        }
    }

    // MARK: - Per message

    private func handle(_ record: KafkaRecord) {
        // No copy of the runtime is kept: deciding mutates its state and parked records in place.
        guard partitions[record.partition]?.lifecycle.isRunning == true else { return }
        metrics.consumed += 1
        if case .keys(let replyTopic) = options.role {
            handleRequest(record, replyTopic: replyTopic)
            return
        }
        if repartition != nil, !admitWhileParked(record) { return }
        let c = options.configuration
        guard let value = record.value, value.count > 0 else {
            refuse(record, reason: "empty: the message has no value")
            return
        }
        if value.count > c.engine.maxMessageBytes {
            refuse(record, reason: "too-large: \(value.count) bytes exceeds engine.maxMessageBytes \(c.engine.maxMessageBytes)")
            return
        }
        switch ownRecord(record, value) {
        case .notOurs, .verified(kind: nil): break
        case .forged:
            refuse(record, reason: "forged-control-record: camfa. headers without a valid \(RecordAuthenticator.macHeader) (only camfa writes them)")
            return
        case .verified(let k?):
            if repartition != nil, k == Array(InputHeaders.readingsKind.utf8) {
                handleReply(record, value)
            } else if !partitions[record.partition]!.parked.isEmpty {
                parkControl(record, kind: k, value)
            } else {
                handleKind(k, record, value)
            }
            return
        }
        // API mode (POST /v1/evaluate): the http flows, or only the one named.
        let trigger: FlowTrigger = record.header(InputHeaders.trigger).map { String(decoding: $0, as: UTF8.self) } == "http" ? .http : .ueba
        let onlyFlow = trigger == .http ? record.header(InputHeaders.flow).map { String(decoding: $0, as: UTF8.self) } : nil
        let event: UEBAEvent
        switch intake.admit(value) {
        case .success(let e): event = e
        case .failure(let refused):
            refuse(record, reason: refused.reason, code: refused.code)
            return
        }
        if repartition != nil {
            route(record, event, trigger: trigger, onlyFlow: onlyFlow)
        } else {
            decide(record, event, trigger: trigger, onlyFlow: onlyFlow, readings: nil)
        }
    }

    enum OwnRecord {
        /// No `camfa.` header: a UEBA event.
        case notOurs
        /// `camfa.` headers without camfa's MAC.
        case forged
        /// camfa's own record, with its `camfa.kind` (nil: none, e.g. an API-mode event).
        case verified(kind: [UInt8]?)
    }

    /// Trust boundary (README "Security model"): the input topic is shared with every UEBA
    /// producer, so camfa's control headers count only under camfa's MAC.
    func ownRecord(_ record: KafkaRecord, _ value: UnsafeRawBufferPointer) -> OwnRecord {
        guard record.hasHeaders else { return .notOurs }
        let headers = record.headers()
        guard RecordAuthenticator.hasControlHeaders(headers) else { return .notOurs }
        guard records.verify(key: record.key.map { [UInt8]($0) }, value: [UInt8](value), headers: headers) else { return .forged }
        // The last header of a name wins, as `KafkaRecord.header` reads it.
        return .verified(kind: headers.last(where: { $0.0 == InputHeaders.kind }).map { $0.1 ?? [] })
    }

    /// The engine's decision on an admitted event, published and answered.
    func decide(_ record: KafkaRecord, _ event: UEBAEvent, trigger: FlowTrigger, onlyFlow: String?, readings: RemoteReadings?) {
        let coordinates = MFAEvent.Coordinates(topic: record.topic, partition: record.partition, offset: record.offset)
        let outcome = engine.process(event, coordinates: coordinates.key, trigger: trigger, onlyFlow: onlyFlow, readings: readings,
                                     state: &partitions[record.partition]!.state)
        switch outcome {
        case .rejected(let reason):
            deadLetter(record, reason: "\(reason.code.rawValue): \(reason.message)", code: reason.code == .late ? .outOfTime : .invalid)
        case .decided(let decisions):
            telemetry.decided(decisions)
            publish(decisions, of: event, record)
            if let request = record.header(InputHeaders.request) {
                answer(request, .success(.evaluation(Evaluation(coordinates: coordinates, event: event, decisions: decisions))))
            }
        }
    }

    /// Publishes the challenges and refusals of a processed record (after `extra`) and
    /// marks the record processed. A deny is an MFA event too (`action: deny`), so that
    /// subscribers end the session in event-flow mode as API callers do.
    func publish(_ decisions: [Decision], of event: UEBAEvent, _ record: KafkaRecord, extra: [Output] = []) {
        let c = options.configuration
        let coordinates = MFAEvent.Coordinates(topic: record.topic, partition: record.partition, offset: record.offset)
        for o in extra { produce(o) }
        var outputs = extra.count
        for d in decisions where d.issuesChallenge || d.action == .deny {
            let id = d.challengeId == nil ? ChallengeID.make(coordinates: coordinates.key, flow: d.flow, key: engine.challengeKey) : nil
            let envelope = MFAEvent.envelope(decision: d, event: event, coordinates: coordinates, source: c.eventSource, id: id)
            produce(mfaOutput(envelope, user: event.originalIdentity, record))
            outputs += 1
            if d.issuesChallenge {
                metrics.challenges += 1
                onChallenge?(d, event)
            }
        }
        metrics.processed += 1
        markProcessed(record, outputs: outputs)
    }

    /// An MFA event of `record`, keyed by the user so each user's events stay in order.
    private func mfaOutput(_ envelope: Value, user: String, _ record: KafkaRecord) -> Output {
        Output(topic: options.configuration.topics.output, key: Array(user.utf8), value: JSONWriter.encode(envelope),
               headers: [("ce_type", Array(MFAEvent.type.utf8))], partition: record.partition, offset: record.offset)
    }

    /// The `cleared` events of challenges that `record` (a verified result, a release) ended.
    func clearedOutputs(_ dropped: [PendingChallenge], user: String, by clearing: MFAEvent.Clearing, method: MFAMethod?,
                                time: Int64, _ record: KafkaRecord) -> [Output] {
        let coordinates = MFAEvent.Coordinates(topic: record.topic, partition: record.partition, offset: record.offset)
        return dropped.map {
            mfaOutput(MFAEvent.cleared($0, user: user, by: clearing, method: method, time: time, coordinates: coordinates,
                                       source: options.configuration.eventSource, key: engine.challengeKey), user: user, record)
        }
    }

    /// The record's offset may be committed once its `outputs` are acknowledged.
    func markProcessed(_ record: KafkaRecord, outputs: Int) {
        partitions[record.partition]!.lifecycle.processed(offset: record.offset, outputs: outputs)
    }

    /// Bad input goes to the dead-letter topic with its reason and coordinates; it is never
    /// dropped silently and never stops the daemon. The log line carries no event content.
    /// A request's own record answers its waiter with the reason (`code`).
    func deadLetter(_ record: KafkaRecord, reason: String, code: PipelineRequestError.Code = .invalid) {
        produce(deadLetterOutput(record, reason: reason, code: code))
        markProcessed(record, outputs: 1)
    }

    /// The dead letter of `record`, counted, logged and answered; the caller produces it.
    private func deadLetterOutput(_ record: KafkaRecord, reason: String, code: PipelineRequestError.Code) -> Output {
        let c = options.configuration
        metrics.deadLettered += 1
        telemetry.deadLettered(reason: reason)
        if let request = record.header(InputHeaders.request) {
            answer(request, .failure(PipelineRequestError(code: code, message: reason)))
        }
        logger.notice("dead letter", metadata: DeadLetterLog.metadata(record, reason: reason, personalData: c.logging.personalData))
        // A forwarded MFA result also names where it was first read (ResultForwarder).
        let origin = record.header(InputHeaders.kind) != nil
            ? record.headers().filter { $0.0.hasPrefix(InputHeaders.originPrefix) } : []
        return Self.deadLetter(record, reason: reason, topic: c.topics.deadLetter, extraHeaders: origin)
    }

    static let deadLetterMaxBytes = 512 << 10
    static let deadLetterKeptBytes = 64 << 10

    /// The dead letter of `record`: its original bytes, the reason and the source
    /// coordinates as headers. A message too large for the engine is usually too large for
    /// the dead-letter topic too: it is cut, and the coordinates point at the whole original.
    static func deadLetter(_ record: KafkaRecord, reason: String, topic: String,
                           extraHeaders: [(String, [UInt8]?)] = []) -> Output {
        var headers: [(String, [UInt8]?)] = [
            ("camfa.reason", Array(reason.utf8)), ("camfa.source.topic", Array(record.topic.utf8)),
            ("camfa.source.partition", Array(String(record.partition).utf8)),
            ("camfa.source.offset", Array(String(record.offset).utf8)),
        ] + extraHeaders
        var value = record.value.map { [UInt8]($0) } ?? []
        if value.count > deadLetterMaxBytes {
            headers.append(("camfa.original.size", Array(String(value.count).utf8)))
            headers.append(("camfa.truncated", Array("true".utf8)))
            value = Array(value.prefix(deadLetterKeptBytes))
        }
        return Output(topic: topic, key: record.key.map { [UInt8]($0) }, value: value, headers: headers,
                      partition: record.partition, offset: record.offset)
    }

    func produce(_ output: Output) { ledger.produce(output) }

    func serve(_ reports: [DeliveryReport]) {
        ledger.serve(reports, other: { r in
            if let request = requestProduces.removeValue(forKey: r.token) { requestDelivered(r, request) }
            if let sent = requestsInFlight.removeValue(forKey: r.token), let error = r.error { resend(sent, after: error) }
        }, acknowledged: { o in
            partitions[o.partition]?.lifecycle.acknowledged(offset: o.offset)
        })
        metrics.deliveryRetries = ledger.retries
        metrics.produceErrors = ledger.produceErrors
    }

    private func commit(async: Bool, only: Set<Int32>? = nil) {
        lastCommit = Date()
        var offsets: [TopicPartition: Int64] = [:]
        // Kafka gets the checkpointed position: the state store is what a restart resumes
        // from, the group offset is for lag monitoring.
        for (p, rt) in partitions where only == nil || only!.contains(p) {
            if let next = rt.lifecycle.checkpointed, committed[p] != next {
                offsets[TopicPartition(options.configuration.topics.input, p)] = next
            }
        }
        guard !offsets.isEmpty else { return }
        do {
            try consumer.commit(offsets, async: async)
            for (tp, o) in offsets { committed[tp.partition] = o }
        } catch {
            logger.warning("offset commit failed: \(error)")
        }
    }

    // MARK: - Rebalance (on the poll thread, inside poll)

    /// Restores each partition from the store and starts it at its checkpointed offset.
    /// Epochs: each ownership period claims the partition with a new, larger epoch — the
    /// wall clock in microseconds, or one more than the stored epoch when that is larger
    /// (clock steps back) — so a previous owner's late write is refused. Claim and load run
    /// on this thread: claim may wait for a write in progress of this store.
    public func assigned(_ list: [TopicPartition]) -> [TopicPartition: Int64] {
        var start: [TopicPartition: Int64] = [:]
        let now = Self.nowMs()
        inputPartitionCount = nil  // partitions may have been added
        for tp in list where tp.topic == options.configuration.topics.input {
            committed.removeValue(forKey: tp.partition)
            paused.remove(tp.partition)
            let (rt, checkpointed) = restoreRuntime(tp, now: now)
            if let checkpointed { start[tp] = checkpointed }
            partitions[tp.partition] = rt
            if rt.lifecycle.isRunning { options.owners?.announce(partition: tp.partition, epoch: rt.lifecycle.epoch, at: now) }
        }
        logger.info("partitions assigned", metadata: ["partitions": "\(list.map(\.partition).sorted())"])
        health.assignmentHandled()
        return start
    }

    /// A new ownership period of `tp`: restored from its checkpoint, or blocked (empty state,
    /// paused, not processed) when that fails. Returns the checkpointed next offset.
    private func restoreRuntime(_ tp: TopicPartition, now: Int64) -> (PartitionRuntime, Int64?) {
        let schedule = CheckpointSchedule(interval: options.configuration.checkpoint.interval,
                                          events: options.configuration.checkpoint.events, now: now)
        do throws(StoreError) {
            let (epoch, checkpoint) = try restore(tp)
            var rt = PartitionRuntime(state: PartitionState(policySet: options.policySet),
                                      lifecycle: TaskLifecycle(epoch: epoch, checkpointed: checkpoint?.nextOffset, schedule: schedule))
            if let checkpoint {
                do {
                    rt.state = try PartitionState(
                        restoringMetadata: checkpoint.metadata, segments: checkpoint.segments, entries: checkpoint.entries,
                        users: checkpoint.users, policySet: options.policySet, parallel: PartitionState.onEveryCore)
                } catch {
                    throw StoreError(code: .corrupt, message: "\(writer.store.path): \(tp): undecodable checkpoint: \(error)")
                }
            }
            logger.info("partition restored", metadata: [
                "partition": "\(tp.partition)", "epoch": "\(epoch)",
                "nextOffset": "\(checkpoint.map { String($0.nextOffset) } ?? "none (auto.offset.reset)")",
                "keys": "\(rt.state.liveKeyCount)",
            ])
            health.setPartitionFault(tp.partition, nil)
            return (rt, checkpoint?.nextOffset ?? startWithoutCheckpoint)
        } catch {
            // Never half-loaded: the partition keeps empty state, stays paused and is not
            // processed, so nothing is skipped once the store is readable or repaired.
            let transient = Self.restoreRetryable.contains(error.code)
            let rt = PartitionRuntime(state: PartitionState(policySet: options.policySet), lifecycle: TaskLifecycle(
                blocked: "restore failed: \(error.code.rawValue)", retryAt: transient ? now + Self.restoreRetryMs : nil, schedule: schedule))
            health.setPartitionFault(tp.partition, "cannot restore its checkpoint (\(error.code.rawValue)): \(error.message)")
            logger.error("cannot restore partition; it is paused and the daemon is unhealthy", metadata: [
                "partition": "\(tp.partition)", "code": "\(error.code.rawValue)", "error": "\(error.message)",
                "retry": "\(transient ? "every \(Self.restoreRetryMs / 1000) s" : "no: the operator must repair or drop the checkpoint")",
            ])
            return (rt, nil)
        }
    }

    /// Store faults that clear without an operator; corruption, a foreign schema and fencing
    /// do not, so retrying those would only repeat the error.
    static let restoreRetryable: Set<StoreError.Code> = [.busy, .io, .readOnly, .diskFull, .open]
    static let restoreRetryMs: Int64 = 3_000

    /// Retries due restores of blocked partitions. A success starts the partition where the
    /// restore says (its checkpoint, else auto.offset.reset): records
    /// delivered while it was blocked were ignored, so the consumer is moved back there.
    private func retryRestores() {
        let now = Self.nowMs()
        for p in partitions.keys.sorted() {
            guard partitions[p]!.lifecycle.restoreRetryDue(now: now) else { continue }
            let tp = TopicPartition(options.configuration.topics.input, p)
            let (rt, checkpointed) = restoreRuntime(tp, now: now)
            guard rt.lifecycle.isRunning else {
                partitions[p] = rt
                continue
            }
            do {
                try consumer.seek([tp: checkpointed ?? startWithoutCheckpoint])
            } catch {
                logger.warning("seek after a retried restore failed; retrying the restore", metadata: ["partition": "\(p)", "error": "\(error)"])
                partitions[p]!.lifecycle.postponeRestore(until: now + Self.restoreRetryMs)
                continue
            }
            partitions[p] = rt
            options.owners?.announce(partition: p, epoch: rt.lifecycle.epoch, at: now)
            logger.notice("partition restore succeeded on retry; consumption resumed", metadata: ["partition": "\(p)"])
        }
    }

    /// Where a partition without a checkpoint starts, with empty state: auto.offset.reset
    /// (as librdkafka's logical offsets), never the group's committed
    /// offset. That one is only for lag monitoring; starting there with empty state would
    /// silently skip the history (e.g. after an operator dropped a corrupt checkpoint).
    private var startWithoutCheckpoint: Int64 {
        let reset = kafkaConfig.properties.last { $0.0 == "auto.offset.reset" }?.1 ?? "earliest"
        return ["earliest", "smallest", "beginning"].contains(reset) ? KafkaOffset.beginning : KafkaOffset.end
    }

    private func restore(_ tp: TopicPartition) throws(StoreError) -> (Int64, PartitionCheckpoint?) {
        let id = PartitionID(topic: tp.topic, partition: tp.partition)
        var epoch = Int64(Date().timeIntervalSince1970 * 1_000_000)
        try writer.checkReadOnlyHook()
        do {
            try writer.store.claim(id, epoch: epoch)
        } catch where error.code == .fenced {
            // The stored epoch is ahead of our clock: go one past it.
            guard let stored = try writer.store.load(id) else { throw error }
            epoch = max(epoch, stored.epoch) + 1
            try writer.store.claim(id, epoch: epoch)
        }
        let local = try writer.store.load(id)
        guard let changelog = writer.changelog else { return (epoch, local) }
        return try restore(id, from: changelog, epoch: epoch, local: local)
    }

    /// The changelog's checkpoint wins over the local one: another host may have moved the
    /// task on since this one last owned it. The local store is then rewritten to match.
    /// A local checkpoint the changelog does not have yet (the changelog was just turned
    /// on) is copied into it instead.
    private func restore(_ id: PartitionID, from changelog: ChangelogTopic, epoch floor: Int64,
                         local: PartitionCheckpoint?) throws(StoreError) -> (Int64, PartitionCheckpoint?) {
        let r: ChangelogTopic.Restored
        do { r = try changelog.restore(partition: id.partition, input: id, epochFloor: floor, local: local) } catch {
            throw StoreError(code: .io, message: "\(error)")
        }
        if r.epoch > floor { try writer.store.claim(id, epoch: r.epoch) }
        var checkpoint = r.checkpoint
        if let cp = checkpoint {
            if r.fromLocal {
                try writer.store.write(CheckpointWrite(partition: id, epoch: r.epoch, nextOffset: cp.nextOffset, metadata: cp.metadata, changelog: cp.changelog))
            } else {
                try writer.store.write(cp.asFullWrite(epoch: r.epoch))
            }
        } else if let local {
            let position: ChangelogPosition
            do { position = try changelog.write(local.asFullWrite(epoch: r.epoch)) } catch { throw StoreError(code: .io, message: "\(error)") }
            try writer.store.write(CheckpointWrite(partition: id, epoch: r.epoch, nextOffset: local.nextOffset, metadata: local.metadata, changelog: position))
            checkpoint = local
            checkpoint?.epoch = r.epoch
        }
        logger.info("partition restored from its changelog", metadata: [
            "partition": "\(id.partition)", "changelog": "\(changelog.topic)", "records": "\(r.stats.records)",
            "ignored": "\(r.stats.ignored)", "repaired": "\(r.stats.repaired)", "seconds": "\(r.stats.seconds)",
            "local": "\(r.fromLocal ? "current" : local == nil ? "none" : r.checkpoint == nil ? "copied to the changelog" : "replaced")",
        ])
        return (r.epoch, checkpoint)
    }

    public func revoked(_ list: [TopicPartition]) {
        // Still ours: let their outputs land, checkpoint, then commit, so the next owner
        // starts exactly after what was published and stored.
        let mine = Set(list.map(\.partition))
        let deadline = Date().addingTimeInterval(options.shutdownTimeout / 2)
        while ledger.hasInFlight(of: mine), Date() < deadline {
            serve(producer.poll(timeoutMs: 50))
        }
        checkpointNow(Array(mine))
        commit(async: false, only: mine)
        for p in mine { forget(p) }
        logger.info("partitions revoked", metadata: ["partitions": "\(mine.sorted())"])
    }

    public func lost(_ list: [TopicPartition]) {
        for tp in list { forget(tp.partition) }
        logger.warning("partitions lost; their state is dropped unwritten", metadata: ["partitions": "\(list.map(\.partition).sorted())"])
    }

    private func forget(_ p: Int32) {
        writer.changelog?.forget(p)
        options.owners?.withdraw(partition: p)
        for (id, q) in awaiting where q == p {
            awaiting.removeValue(forKey: id)
            mailbox.answer(id, .failure(PipelineRequestError(code: .notOwned, message: "partition \(p) moved to another instance, which processes the request")))
        }
        // Parked records go with the runtime (their messages back to librdkafka); the next
        // owner reads them again from the checkpoint, and sends their requests again.
        partitions.removeValue(forKey: p)
        requestsInFlight = requestsInFlight.filter { $0.value.partition != p }
        // Outputs still in flight belong to the ownership period that ends here.
        ledger.orphan(partition: p)
        committed.removeValue(forKey: p)
        // librdkafka keeps an application pause across unassign and a later assign of the
        // same partition: undo ours while the partition is still assigned.
        if paused.remove(p) != nil {
            do { try consumer.resume([TopicPartition(options.configuration.topics.input, p)]) } catch {
                logger.warning("resume before unassign failed: \(error)")
            }
        }
        health.setPartitionFault(p, nil)
    }
}

/// Counters read by other threads (health, metrics, the dev view): relaxed reads are fine.
public final class PipelineCounters: @unchecked Sendable {
    public var consumed = 0
    public var processed = 0
    public var deadLettered = 0
    public var challenges = 0
    public var deliveryRetries = 0
    public var produceErrors = 0
}

/// A flag set from a signal handler or another thread, read by the poll loop.
public final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    public init() {}
    public func set() { lock.withLock { value = true } }
    public var isSet: Bool { lock.withLock { value } }
}

// MARK: - Requests from other threads (poll thread; PipelineRequests.swift)

extension Pipeline {
    /// Drains the mailbox. Whatever changes state (API-mode events, MFA results) is written
    /// to the input topic and answered when its record is processed, so it is counted once,
    /// in order, and replayed after a crash; status queries are answered from the state.
    private func serveRequests() {
        let c = options.configuration
        for request in mailbox.take() {
            switch request {
            case .status(let id, let user):
                mailbox.answer(id, status(of: user))
            case .evaluate(let id, let json, let user, let flow):
                guard owned(id, user) else { continue }
                var headers: [(String, [UInt8]?)] = [(InputHeaders.trigger, Array("http".utf8)), (InputHeaders.request, Array(id.utf8))]
                if let flow { headers.append((InputHeaders.flow, Array(flow.utf8))) }
                produceRequest(id, key: Array(user.utf8), value: json, headers: headers, topic: c.topics.input)
            case .mfaResult(let id, let result):
                guard owned(id, result.user) else { continue }
                let headers: [(String, [UInt8]?)] = [(InputHeaders.kind, Array(InputHeaders.mfaResultKind.utf8)), (InputHeaders.request, Array(id.utf8))]
                produceRequest(id, key: Array(result.user.utf8), value: result.json, headers: headers, topic: c.topics.input)
            case .release(let id, let user, let time):
                guard owned(id, user) else { continue }
                let headers: [(String, [UInt8]?)] = [(InputHeaders.kind, Array(InputHeaders.releaseKind.utf8)), (InputHeaders.request, Array(id.utf8))]
                let json = JSONWriter.encode(.map(ValueMap([("user", .string(user)), ("time", .int(time))])))
                produceRequest(id, key: Array(user.utf8), value: json, headers: headers, topic: c.topics.input)
            case .factor(let id, let record):
                guard owned(id, record.user) else { continue }
                let headers: [(String, [UInt8]?)] = [(InputHeaders.kind, Array(record.kind.utf8)), (InputHeaders.request, Array(id.utf8))]
                produceRequest(id, key: Array(record.user.utf8), value: record.json, headers: headers, topic: c.topics.input)
            }
        }
    }

    /// Whether this instance processes the user now; if not, the request is answered so
    /// before its record is written: the record would be processed by another instance and
    /// a retry or forward would then count the event twice, or meet a used-up code or a
    /// secret nobody was shown. A rebalance between this check and the delivery still
    /// ends in `requestDelivered`'s not-owned (then without an owner to forward to).
    private func owned(_ id: String, _ user: String) -> Bool {
        guard case .failure(let e) = localPartition(ofUser: user) else { return true }
        mailbox.answer(id, .failure(e))
        return false
    }

    /// Not retried: librdkafka already retries for `message.timeout.ms`, and the caller
    /// has a deadline; a failure is answered `.unavailable`.
    private func produceRequest(_ id: String, key: [UInt8], value: [UInt8], headers: [(String, [UInt8]?)], topic: String) {
        let token = ledger.reserveToken()
        do {
            try producer.produce(topic: topic, key: key, value: value, headers: records.sign(key: key, value: value, headers: headers), token: token)
            requestProduces[token] = id
        } catch {
            mailbox.answer(id, .failure(PipelineRequestError(code: .unavailable, message: "cannot write to the input topic: \(error)")))
        }
    }

    /// The request's record is in the input topic. If its partition is not ours, another
    /// instance processes it (and its state answers): tell the caller to ask that one.
    private func requestDelivered(_ r: DeliveryReport, _ id: String) {
        if let error = r.error {
            mailbox.answer(id, .failure(PipelineRequestError(code: .unavailable, message: "cannot write to the input topic: \(error)")))
        } else if let rt = partitions[r.partition] {
            if let blocked = rt.lifecycle.blockedReason {
                mailbox.answer(id, .failure(PipelineRequestError(
                    code: .unavailable, message: "partition \(r.partition) is not being processed (\(blocked))")))
            } else if mailbox.isWaiting(id) {
                // Answered when the record is processed (unless that happened already).
                awaiting[id] = r.partition
            }
        } else if health.assignmentsHandled == 0 {
            mailbox.answer(id, .failure(Self.notAssignedYet))
        } else {
            mailbox.answer(id, .failure(PipelineRequestError(
                code: .notOwned, message: "partition \(r.partition) of the input topic is assigned to another instance, which processes the request")))
        }
    }

    /// Before the first assignment no partition is ours yet, but may well become ours.
    private static var notAssignedYet: PipelineRequestError {
        PipelineRequestError(code: .unavailable, message: "waiting for the first partition assignment")
    }

    /// A record camfa wrote into its input topic with a `camfa.kind` header.
    func handleKind(_ kind: [UInt8], _ record: KafkaRecord, _ value: UnsafeRawBufferPointer) {
        switch String(decoding: kind, as: UTF8.self) {
        case InputHeaders.mfaResultKind: handleResult(record, value)
        case InputHeaders.releaseKind: handleRelease(record, value)
        case let k where FactorRecord.kinds.contains(k): handleFactor(k, record, value)
        default:
            deadLetter(record, reason: "unknown-kind: camfa.kind '\(String(decoding: kind.prefix(64), as: UTF8.self))' is not one of "
                + ([InputHeaders.mfaResultKind, InputHeaders.releaseKind] + FactorRecord.kinds).joined(separator: ", "))
        }
    }

    /// An admin release: `{"user", "time"}`, written by this daemon (serveRequests).
    private func handleRelease(_ record: KafkaRecord, _ value: UnsafeRawBufferPointer) {
        guard case .map(let m)? = try? JSONParser.parse([UInt8](value), maxDepth: 2), case .string(let user)? = m[string: "user"],
              !user.isEmpty else {
            deadLetter(record, reason: "invalid: a release is {\"user\": <id>, \"time\": <epoch ms>}")
            return
        }
        let dropped = engine.releaseUser(user, state: &partitions[record.partition]!.state)
        logger.notice("user released by an operator", metadata: ["partition": "\(record.partition)", "offset": "\(record.offset)",
                                                                "challenges": "\(dropped.count)"])
        var time = options.clock()
        if case .int(let t)? = m[string: "time"] { time = t }
        let cleared = clearedOutputs(dropped, user: user, by: .release, method: nil, time: time, record)
        for o in cleared { produce(o) }
        metrics.processed += 1
        markProcessed(record, outputs: cleared.count)
        if let request = record.header(InputHeaders.request) {
            answer(request, .success(.release(ReleaseOutcome(user: user, released: dropped.count))))
        }
    }

    private func handleResult(_ record: KafkaRecord, _ value: UnsafeRawBufferPointer) {
        let result: MFAResult
        do {
            result = try MFAResult.decode(json: [UInt8](value), receivedAt: nil)
        } catch {
            deadLetter(record, reason: "invalid: \(error.field.map { "\($0): " } ?? "")\(error.message)")
            return
        }
        // As for events: a result from the future would move the watermark and make the
        // user's next events late.
        if let reason = Intake.futureReason(field: "time", time: result.time, now: options.clock(), skew: options.configuration.engine.maxFutureSkew) {
            deadLetter(record, reason: reason)
            return
        }
        let p = record.partition
        let applied = engine.applyMFAResult(challengeId: result.challengeId, user: result.user, method: result.method,
                                            verified: result.outcome == .verified, time: result.time, state: &partitions[p]!.state)
        // Policies see every result as an event (MFA brute force, fatigue, guessed ids),
        // rejected ones included. A result later than the allowed lateness still clears
        // its challenge but is not counted.
        let outcome: String
        switch applied {
        case .failure: outcome = "rejected"
        case .success: outcome = result.outcome.rawValue
        }
        let event = Engine.mfaResultEvent(challengeId: result.challengeId, user: result.user, method: result.method,
                                          outcome: outcome, time: result.time)
        let coordinates = MFAEvent.Coordinates(topic: record.topic, partition: p, offset: record.offset)
        let decisions = policyDecisions(on: event, record)
        switch applied {
        case .failure(let rejection):
            let code: PipelineRequestError.Code = switch rejection.code {
            case .expiredChallenge: .expiredChallenge
            case .methodNotOffered: .methodNotOffered
            case .unknownChallenge: .unknownChallenge
            }
            let dead = deadLetterOutput(record, reason: "\(rejection.code.rawValue): \(rejection.message)", code: code)
            publish(decisions, of: event, record, extra: [dead])
        case .success(let accepted):
            let cleared = clearedOutputs(accepted.dropped, user: result.user, by: .verified, method: result.method, time: result.time, record)
            publish(decisions, of: event, record, extra: cleared)
            if let request = record.header(InputHeaders.request) {
                answer(request, .success(.mfaResult(MFAResultOutcome(result: result, cleared: accepted.cleared, coordinates: coordinates))))
            }
        }
    }

    /// The decisions on the `mfa` event an MFA result or a checked code becomes, so that
    /// policies count it (brute force, fatigue). With key tasks its statistics of other keys
    /// are not counted (README "Repartitioning"): its outcome depends on the user's state,
    /// which they lack.
    func policyDecisions(on event: UEBAEvent, _ record: KafkaRecord) -> [Decision] {
        let coordinates = MFAEvent.Coordinates(topic: record.topic, partition: record.partition, offset: record.offset)
        guard case .decided(let d) = engine.process(event, coordinates: coordinates.key, readings: repartition == nil ? nil : [:],
                                                    state: &partitions[record.partition]!.state) else {
            logger.notice("late MFA result not counted by policies", metadata: ["partition": "\(record.partition)", "offset": "\(record.offset)"])
            return []
        }
        return d
    }

    /// Answers the request whose id a processed record carries (if it waits here).
    func answer(_ header: [UInt8], _ answer: PipelineMailbox.Answer) {
        let id = String(decoding: header, as: UTF8.self)
        awaiting.removeValue(forKey: id)
        mailbox.answer(id, answer)
    }

    /// The user's MFA state from the partition that owns it. Expiry is judged against the
    /// wall clock here: the question is about now, not about an event.
    private func status(of user: String) -> PipelineMailbox.Answer {
        let p: Int32
        switch localPartition(ofUser: user) {
        case .failure(let e): return .failure(e)
        case .success(let local): p = local
        }
        let rt = partitions[p]!
        let now = options.clock()
        let pending = rt.state.pendingChallenges(user: user, at: now).sorted { $0.since < $1.since }
        let expired = rt.state.expiredChallenges(user: user, at: now).sorted { $0.since < $1.since }
        var failMode = FailMode.open
        for challenge in pending + expired where options.policySet.flows.first(where: { $0.name == challenge.flow })?.failMode == .closed {
            failMode = .closed
        }
        var status = MFAStatus(user: user, pending: pending, lastVerified: rt.state.lastVerified(user: user), failMode: failMode)
        status.expired = expired
        return .success(.status(status))
    }

    /// The user's partition when this instance processes it now; else why not.
    func localPartition(ofUser user: String) -> Result<Int32, PipelineRequestError> {
        guard let p = partition(ofUser: user) else {
            return .failure(PipelineRequestError(code: .unavailable, message: "the input topic's partition count is unknown"))
        }
        guard let rt = partitions[p] else {
            if health.assignmentsHandled == 0 { return .failure(Self.notAssignedYet) }
            var e = PipelineRequestError(code: .notOwned, message: "partition \(p) of the input topic is assigned to another instance")
            e.owner = options.owners?.owner(of: p)
            return .failure(e)
        }
        if let blocked = rt.lifecycle.blockedReason {
            return .failure(PipelineRequestError(code: .unavailable, message: "partition \(p) is not being processed (\(blocked))"))
        }
        return .success(p)
    }

    /// Where the producers' partitioner puts the user's events (key = user id).
    private func partition(ofUser user: String) -> Int32? {
        let c = options.configuration
        guard let partitioner = KafkaPartitioner(property: c.kafka.properties["partitioner"]) else { return nil }
        if inputPartitionCount == nil {
            guard Date().timeIntervalSince(lastPartitionCountAttempt) >= 1 else { return nil }
            lastPartitionCountAttempt = Date()
            do { inputPartitionCount = try producer.partitionCount(topic: c.topics.input, timeoutMs: 2000) } catch {
                logger.warning("cannot read the input topic's partition count: \(error)")
                return nil
            }
        }
        return partitioner.partition(key: Array(user.utf8), partitionCount: inputPartitionCount!)
    }
}
