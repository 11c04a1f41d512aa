import CAMFACore
import CAMFAKafka
import Foundation

/// Repartitioning in the poll loop (README "Repartitioning"). A user task that reads an
/// event with statistics of other keys sends their operations to the key tasks (one
/// request per repartition partition), parks the event and everything after it, and
/// decides once the replies have come back into its own input partition. A key task applies
/// each request once and replies. Both are tasks like any other: state and offsets
/// checkpointed together, outputs acknowledged before a checkpoint covers them.
extension Pipeline {
    /// The repartition topic's partition count, read once at start: requests are routed by
    /// it (more partitions later would move keys; the README says to recreate the topic).
    func startRepartition() throws {
        guard case .users = options.role, let topic = options.configuration.topics.repartition, options.policySet.needsRepartition else { return }
        do {
            repartition = (topic, try producer.partitionCount(topic: topic))
        } catch {
            throw KafkaError(code: error.code, message: "topics.repartition '\(topic)': cannot read its partitions (create it as the README's Repartitioning section says): \(error.message)")
        }
        logger.info("statistics of other keys are counted in the key tasks", metadata: ["topic": "\(topic)", "partitions": "\(repartition!.partitions)"])
    }

    /// Refuses the record now, or in its turn when records before it are parked.
    func refuse(_ record: KafkaRecord, reason: String, code: PipelineRequestError.Code = .invalid) {
        if partitions[record.partition]!.parked.isEmpty {
            deadLetter(record, reason: reason, code: code)
        } else {
            park(record, .deadLetter(reason: reason, code: code))
        }
    }

    func park(_ record: KafkaRecord, _ work: ParkedRecords<RetainedRecord>.Work, waiting: [Int32: [String]] = [:]) {
        guard let (batch, index) = handling else { preconditionFailure("parking outside the batch loop") }
        partitions[record.partition]!.parked.append(.init(offset: record.offset, held: batch.retain(index), bytes: record.value?.count ?? 0,
                                                          work: work, waiting: waiting))
    }

    /// One of camfa's own records behind parked ones. A result moves the watermark when it
    /// is decided, so the events read after it are judged late against it already.
    func parkControl(_ record: KafkaRecord, kind: [UInt8], _ value: UnsafeRawBufferPointer) {
        let p = record.partition
        // A verification is an MFA result for the policies too (Pipeline+Factors.swift).
        var time: Int64?
        if kind == Array(InputHeaders.mfaResultKind.utf8) {
            time = (try? MFAResult.decode(json: [UInt8](value), receivedAt: nil))?.time
        } else if kind == Array(FactorRecord.verificationKind.utf8),
                  case .success(let v) = FactorRecord.decode(kind: FactorRecord.verificationKind, json: [UInt8](value)) {
            time = v.time
        }
        if let time, Intake.futureReason(field: "time", time: time, now: options.clock(), skew: options.configuration.engine.maxFutureSkew) == nil,
           engine.lateness(of: time, watermark: partitions[p]!.readWatermark) == nil {
            partitions[p]!.readWatermark = max(partitions[p]!.readWatermark, time)
        }
        park(record, .control(kind: kind))
    }

    /// Whether `record` is read now. Past `engine.maxParkedRecords`/`maxParkedBytes`
    /// records are not parked but read again once there is room (a seek back), replies
    /// excepted: they are what lets the front go.
    func admitWhileParked(_ record: KafkaRecord) -> Bool {
        let p = record.partition
        // The rest of the batch the seek back happened in: fetched before it (librdkafka
        // drops what it had fetched; the loop clears this at the end of the batch).
        if partitions[p]!.seekingTo != nil { return false }
        let limits = options.configuration.engine
        let full = partitions[p]!.parked.count >= limits.maxParkedRecords || partitions[p]!.parked.bytes >= limits.maxParkedBytes
        guard partitions[p]!.skippingFrom != nil || full else { return true }
        if let reply = verifiedReply(record) {
            // Before anything is skipped a reply is parked as usual; after, it is read again
            // with the rest, so here only its readings are taken.
            guard partitions[p]!.skippingFrom != nil else { return true }
            file(reply, partition: p)
            decideReady(p)
        } else if partitions[p]!.skippingFrom == nil {
            partitions[p]!.skippingFrom = record.offset
            logger.warning("too many records wait for key tasks; reading on for their replies only", metadata: [
                "partition": "\(p)", "parked": "\(partitions[p]!.parked.count)", "bytes": "\(partitions[p]!.parked.bytes)",
            ])
        }
        return false
    }

    /// The reply in `record`, if it is one of camfa's (its kind and MAC).
    private func verifiedReply(_ record: KafkaRecord) -> RepartitionReply? {
        guard let value = record.value, case .verified(let kind) = ownRecord(record, value),
              kind == Array(InputHeaders.readingsKind.utf8) else { return nil }
        return try? RepartitionReply(decoding: [UInt8](value))
    }

    /// Seeks back to the first record not parked once the front has made room.
    func resumeIfRoom(_ p: Int32) {
        guard let from = partitions[p]?.skippingFrom else { return }
        let limits = options.configuration.engine
        guard partitions[p]!.parked.count <= limits.maxParkedRecords / 2, partitions[p]!.parked.bytes <= limits.maxParkedBytes / 2 else { return }
        do {
            try consumer.seek([TopicPartition(options.configuration.topics.input, p): from])
            partitions[p]!.skippingFrom = nil
            partitions[p]!.seekingTo = from
        } catch {
            logger.warning("seek back to the records not parked failed; retried", metadata: ["partition": "\(p)", "error": "\(error)"])
        }
    }

    /// An admitted event of a users task with `topics.repartition`: judged late here, when
    /// read (its turn comes later), its operations sent, decided at once when it needs none
    /// and nothing waits before it.
    func route(_ record: KafkaRecord, _ event: UEBAEvent, trigger: FlowTrigger, onlyFlow: String?) {
        let p = record.partition
        // No copy of the runtime is held: deciding mutates its state in place.
        let nothingParked = partitions[p]!.parked.isEmpty
        let watermark = nothingParked ? partitions[p]!.state.watermark : partitions[p]!.readWatermark
        if let late = engine.lateness(of: event.requestDate, watermark: watermark) {
            refuse(record, reason: "\(late.code.rawValue): \(late.message)", code: .outOfTime)
            return
        }
        partitions[p]!.readWatermark = max(watermark, event.requestDate)
        let ops = engine.repartitionOperations(event, trigger: trigger, onlyFlow: onlyFlow)
        if ops.isEmpty && nothingParked {
            decide(record, event, trigger: trigger, onlyFlow: onlyFlow, readings: [:])
            return
        }
        var waiting: [Int32: [String]] = [:]
        var requests: [Int32: [RepartitionRequest.WireOperation]] = [:]
        var order: [Int32] = []
        for op in ops {
            let wire = engine.wire(op)
            let k = Self.keyPartition(wire, of: repartition!.partitions)
            if requests[k] == nil { order.append(k) }
            requests[k, default: []].append(wire)
            waiting[k, default: []].append(engine.descriptor(wire))
        }
        park(record, .event(event, trigger: trigger, onlyFlow: onlyFlow), waiting: waiting)
        for k in order {
            let request = RepartitionRequest(originPartition: p, originOffset: record.offset, floor: partitions[p]!.lifecycle.checkpointed ?? 0,
                                             destination: k, operations: requests[k]!)
            send(request)
        }
    }

    /// All of a key's operations go to one partition, whichever user task sends them.
    static func keyPartition(_ op: RepartitionRequest.WireOperation, of count: Int32) -> Int32 {
        KafkaPartitioner.consistent.partition(key: Array("\(op.keyspace)\u{0}\(op.key)".utf8), partitionCount: count) ?? 0
    }

    private func send(_ request: RepartitionRequest) {
        let value = request.encoded()
        let headers = records.sign(key: nil, value: value, headers: [(InputHeaders.kind, Array(InputHeaders.repartitionKind.utf8))])
        let output = DeliveryLedger.Output(topic: repartition!.topic, key: nil, value: value, headers: headers,
                                           partition: request.originPartition, offset: request.originOffset, destination: request.destination)
        produceRequest(output)
    }

    private func produceRequest(_ output: DeliveryLedger.Output) {
        let token = ledger.reserveToken()
        do {
            try producer.produce(topic: output.topic, partition: output.destination, key: output.key, value: output.value,
                                 headers: output.headers, token: token)
            requestsInFlight[token] = output
        } catch {
            // The queue is full: sent again from the poll loop, or the event would wait for good.
            requestsUnsent.append(output)
            logger.warning("repartition request not queued; sending it again", metadata: ["partition": "\(output.partition)", "error": "\(error)"])
        }
    }

    /// At the end of a batch: what was fetched before a seek back is gone now; a seek that
    /// failed is tried again (no reply may come to try it).
    func afterBatch() {
        for p in partitions.keys {
            partitions[p]!.seekingTo = nil
            resumeIfRoom(p)
        }
    }

    /// Requests the producer refused to queue (it was full), sent again each iteration.
    func sendUnsentRequests() {
        guard !requestsUnsent.isEmpty else { return }
        let unsent = requestsUnsent.filter { partitions[$0.partition] != nil }
        requestsUnsent.removeAll()
        for o in unsent { produceRequest(o) }
    }

    /// librdkafka gave up on a request: send it again, or the event would wait for good.
    func resend(_ output: DeliveryLedger.Output, after error: KafkaError) {
        guard partitions[output.partition] != nil else { return }
        logger.warning("repartition request not delivered; sending it again", metadata: ["partition": "\(output.partition)", "error": "\(error)"])
        produceRequest(output)
    }

    /// A key task's readings for one of this task's parked events. The reply record itself
    /// is processed in its turn, like every record.
    func handleReply(_ record: KafkaRecord, _ value: UnsafeRawBufferPointer) {
        let p = record.partition
        if let reply = try? RepartitionReply(decoding: [UInt8](value)) {
            file(reply, partition: p)
        } else {
            logger.warning("undecodable repartition reply ignored", metadata: ["partition": "\(p)", "offset": "\(record.offset)"])
        }
        if partitions[p]!.parked.isEmpty {
            markProcessed(record, outputs: 0)
        } else {
            park(record, .reply)
        }
        decideReady(p)
    }

    /// Files a reply's readings with the parked event it answers.
    private func file(_ reply: RepartitionReply, partition p: Int32) {
        guard reply.originPartition == p else {
            // Signed, but for another partition: a copy, which could lend its readings to
            // another event at the same offset.
            logger.warning("repartition reply for another partition ignored", metadata: ["partition": "\(p)", "offset": "\(reply.originOffset)"])
            return
        }
        // false: a duplicate, or for an event decided before (an earlier ownership).
        _ = partitions[p]!.parked.reply(offset: reply.originOffset, destination: reply.destination, readings: reply.readings)
    }

    /// Decides the parked records from the front while the front has what it waits for.
    func decideReady(_ p: Int32) {
        defer { resumeIfRoom(p) }
        while let entry = partitions[p]?.parked.popReady() {
            guard let record = entry.held?.record else {
                partitions[p]!.lifecycle.processed(offset: entry.offset, outputs: 0)
                continue
            }
            switch entry.work {
            case .event(let event, let trigger, let onlyFlow):
                // By name: the statistics may have been renumbered by a reload meanwhile.
                var readings: RemoteReadings = [:]
                for (name, reading) in entry.readings {
                    if let id = engine.statisticID(descriptor: name) { readings[id] = reading }
                }
                decide(record, event, trigger: trigger, onlyFlow: onlyFlow, readings: readings)
            case .deadLetter(let reason, let code):
                deadLetter(record, reason: reason, code: code)
            case .control(let kind):
                if let value = record.value { handleKind(kind, record, value) } else { markProcessed(record, outputs: 0) }
            case .reply:
                markProcessed(record, outputs: 0)
            }
        }
    }

    /// A key task's record: one event's operations, applied once, answered into the
    /// event's partition of the input topic.
    func handleRequest(_ record: KafkaRecord, replyTopic: String) {
        guard let value = record.value, value.count > 0 else {
            deadLetter(record, reason: "empty: a repartition request has a value")
            return
        }
        let bytes = [UInt8](value), headers = record.headers()
        guard headers.contains(where: { $0.0 == InputHeaders.kind && $0.1 == Array(InputHeaders.repartitionKind.utf8) }),
              records.verify(key: record.key.map { [UInt8]($0) }, value: bytes, headers: headers) else {
            deadLetter(record, reason: "forged-control-record: a repartition request without a valid \(RecordAuthenticator.macHeader) (only camfa writes them)")
            return
        }
        let request: RepartitionRequest
        do { request = try RepartitionRequest(decoding: bytes) } catch {
            deadLetter(record, reason: "invalid: \(error)")
            return
        }
        // Signed for one key partition: a copy in another would count its keys in a task
        // no reader asks, and its reply could reach the user task before the real one.
        guard request.destination == record.partition else {
            deadLetter(record, reason: "misrouted: a repartition request for partition \(request.destination) read from partition \(record.partition)")
            return
        }
        guard let reply = engine.apply(request, state: &partitions[record.partition]!.state) else {
            markProcessed(record, outputs: 0)  // applied before: its reply was sent then
            return
        }
        let encoded = reply.encoded()
        let signed = records.sign(key: nil, value: encoded, headers: [(InputHeaders.kind, Array(InputHeaders.readingsKind.utf8))])
        produce(DeliveryLedger.Output(topic: replyTopic, key: nil, value: encoded, headers: signed, partition: record.partition,
                                      offset: record.offset, destination: request.originPartition))
        metrics.processed += 1
        markProcessed(record, outputs: 1)
    }
}
