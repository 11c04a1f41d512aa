// The seed's `subscribe("authing.security.mfa?originalIdentity=…", handler)`: a service
// that reacts to camfa's MFA events for its users (here: prints what it would do).
//
//   CAMFA_BOOTSTRAP=127.0.0.1:9092 camfa-example-subscriber 'authing.security.mfa?appId=portal'
import CAMFAClient
import CAMFAKafka
import Dispatch
import Foundation

// Stop on SIGTERM/SIGINT between batches, after committing what was handled (a parent
// that ignores SIGTERM would otherwise pass that on, and the loop would never end).
final class Stop: @unchecked Sendable {
    private let lock = NSLock()
    private var requested = false
    private var sources: [DispatchSourceSignal] = []
    var isRequested: Bool { lock.withLock { requested } }

    /// Outside top-level code on purpose: a handler made there would be main-actor
    /// isolated, and run on a dispatch thread it would trap.
    init(on signals: [Int32]) {
        for sig in signals {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [unowned self] in lock.withLock { requested = true } }
            source.resume()
            sources.append(source)
        }
    }
}
let stop = Stop(on: [SIGTERM, SIGINT])

let env = ProcessInfo.processInfo.environment
let bootstrap = env["CAMFA_BOOTSTRAP"] ?? "127.0.0.1:9092"
let filter = try MFAEventFilter(parsing: Array(CommandLine.arguments.dropFirst()))
let topic = env["CAMFA_OUTPUT_TOPIC"] ?? "authing.security.mfa"
let consumer = try KafkaConsumer(config: KafkaConfig(bootstrapServers: bootstrap, [("auto.offset.reset", "earliest")]),
                                 groupID: env["CAMFA_GROUP"] ?? "example-subscriber")
try consumer.subscribe([topic])
var seen = MFAEventDeduplicator(capacity: 100_000)
let batch = KafkaBatch()
while !stop.isRequested {
    consumer.poll(into: batch, maxMessages: 500, timeoutMs: 500)
    for record in batch.records {
        guard let value = record.value, let event = MFAEventSummary(json: Data(value)), filter.matches(event), seen.isNew(event.id) else { continue }
        let line: String
        switch event.action {
        case "mfa": line = "hold the session of \(event.originalIdentity) until MFA (\(event.flow ?? "?"), challenge \(event.id))"
        case "deny": line = "end the session of \(event.originalIdentity) (\(event.flow ?? "?"))"
        default: line = "release \(event.originalIdentity) (challenge cleared)"
        }
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
    // After handling: a restart goes on from here (and the deduplicator drops repeats).
    var next: [TopicPartition: Int64] = [:]
    for r in batch.records { next[r.topicPartition] = r.offset + 1 }
    if !next.isEmpty { try? consumer.commit(next) }
}
_ = consumer.close()
