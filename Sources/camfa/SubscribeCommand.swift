import ArgumentParser
import CAMFAClient
import CAMFACore
import CAMFADaemon
import CAMFAKafka
import Foundation

/// The seed's `subscribe("authing.security.mfa?originalIdentity=…", handler)` for people and
/// shell scripts: prints the matching MFA events as they arrive, each once. Its position
/// is the consumer group's, committed after each batch is printed, so a restart goes on
/// where the last run stopped.
struct SubscribeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "subscribe",
        abstract: "Print the MFA events that match the filters as they arrive, until SIGTERM or SIGINT.")

    @Option(help: "Kafka bootstrap servers.") var bootstrap: String
    @Option(help: "The MFA topic.") var topic: String = "authing.security.mfa"
    @Option(name: .customLong("filter"), help: "FIELD=VALUE (originalIdentity, appId, flow, action), repeatable; or the seed's authing.security.mfa?originalIdentity=u1&appId=a.")
    var filters: [String] = []
    @Option(help: "The consumer group: its committed position is where a restart goes on.") var group: String = "camfa-subscribe"
    @Option(help: "Where a group without a committed position starts: beginning or end.") var from: String = "end"
    @Option(help: "json: the envelope, one per line; pretty: one readable line per event.") var format: String = "json"
    @Option(help: "A file of the ids already printed, so a restarted subscriber drops a duplicate published before the restart (camfa publishes at least once).")
    var seen: String?

    func run() throws {
        guard format == "json" || format == "pretty" else { throw ValidationError("--format must be json or pretty") }
        guard from == "beginning" || from == "end" else { throw ValidationError("--from must be beginning or end") }
        let filter: MFAEventFilter
        do { filter = try MFAEventFilter(parsing: filters) } catch { throw ValidationError("\(error)") }

        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let stop = StopSignal()
        let sources = [SIGTERM, SIGINT].map { sig in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stop.set() }
            source.resume()
            return source
        }
        defer { sources.forEach { $0.cancel() } }

        let consumer = try KafkaConsumer(
            // A short session: a restarted subscriber takes its partitions back within
            // seconds even when the previous run could not leave the group.
            config: KafkaConfig(bootstrapServers: bootstrap, [("auto.offset.reset", from == "beginning" ? "earliest" : "latest"), ("log_level", "3"),
                                                            ("session.timeout.ms", "10000"), ("heartbeat.interval.ms", "1000")]),
            groupID: group)
        try consumer.subscribe([topic])
        var dedup = MFAEventDeduplicator()
        var seenFile: FileHandle?
        if let seen {
            if !FileManager.default.fileExists(atPath: seen) { FileManager.default.createFile(atPath: seen, contents: nil) }
            guard let text = try? String(contentsOfFile: seen, encoding: .utf8), let handle = FileHandle(forWritingAtPath: seen) else {
                throw ValidationError("--seen \(seen): cannot read and write the file")
            }
            let remembered = text.split(separator: "\n").suffix(dedup.capacity)
            for id in remembered { _ = dedup.isNew(String(id)) }
            // Kept to the window the deduplicator remembers, rewritten at each start.
            handle.truncateFile(atOffset: 0)
            handle.write(Data(remembered.map { $0 + "\n" }.joined().utf8))
            seenFile = handle
        }
        let colour = format == "pretty" && isatty(1) == 1
        let batch = KafkaBatch()
        let out = FileHandle.standardOutput
        while !stop.isSet {
            _ = consumer.poll(into: batch, maxMessages: 500, timeoutMs: 200)
            var next: [TopicPartition: Int64] = [:]
            var text = Data(), ids = Data()
            for r in batch.records {
                next[r.topicPartition] = r.offset + 1
                guard let v = r.value else { continue }
                let bytes = Data(v)
                guard let e = MFAEventSummary(json: bytes) else {
                    printError("\(r.topic)/\(r.partition)/\(r.offset): not an MFA event, skipped")
                    continue
                }
                guard filter.matches(e), dedup.isNew(e.id) else { continue }
                ids += Data((e.id + "\n").utf8)
                if format == "json" {
                    text += bytes + Data([0x0A])
                } else if let envelope = try? JSONParser.parse([UInt8](bytes)) {
                    text += Data((MFAEventLine.format(envelope, colour: colour).text + "\n").utf8)
                }
            }
            batch.release()
            if !text.isEmpty { out.write(text) }
            if !ids.isEmpty, let seenFile {
                seenFile.write(ids)
                try? seenFile.synchronize()
            }
            // Printed (and remembered) first, then committed: a crash in between prints
            // again, unless --seen remembers it.
            if !next.isEmpty {
                do { try consumer.commit(next) } catch { printError("offset commit failed: \(error)") }
            }
        }
        _ = consumer.close(timeoutSeconds: 5)
    }
}
