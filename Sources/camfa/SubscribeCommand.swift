import ArgumentParser
import CAMFAClient
import CAMFACore
import CAMFADaemon
import Foundation
import Logging

/// The seed's `subscribe("authing.security.mfa?originalIdentity=…", handler)` for people and
/// shell scripts: prints the matching MFA events as they arrive, each once, through
/// the client library's `MFASubscriber`. Its position is the consumer group's, committed
/// once an event is printed, so a restart goes on where the last run stopped.
struct SubscribeCommand: AsyncParsableCommand {
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

    func run() async throws {
        guard format == "json" || format == "pretty" else { throw ValidationError("--format must be json or pretty") }
        guard from == "beginning" || from == "end" else { throw ValidationError("--from must be beginning or end") }
        let filter: MFAEventFilter
        do { filter = try MFAEventFilter(parsing: filters) } catch { throw ValidationError("\(error)") }

        let rememberedIds = 100_000
        var remembered: [Substring] = []
        var seenFile: FileHandle?
        if let seen {
            if !FileManager.default.fileExists(atPath: seen) { FileManager.default.createFile(atPath: seen, contents: nil) }
            guard let text = try? String(contentsOfFile: seen, encoding: .utf8), let handle = FileHandle(forWritingAtPath: seen) else {
                throw ValidationError("--seen \(seen): cannot read and write the file")
            }
            remembered = Array(text.split(separator: "\n").suffix(rememberedIds))
            // Kept to the window the stream remembers, rewritten at each start.
            handle.truncateFile(atOffset: 0)
            handle.write(Data(remembered.map { $0 + "\n" }.joined().utf8))
            seenFile = handle
        }
        var logger = Logger(label: "camfa.subscribe")
        logger.logLevel = .warning
        let stream: MFAEventStream
        do {
            stream = try MFASubscriber(bootstrap: bootstrap, group: group, topic: topic)
                .subscribe(filter: filter, from: from == "beginning" ? .beginning : .end, rememberedIds: rememberedIds,
                           remembering: remembered.map(String.init), logger: logger)
        } catch { throw ValidationError("\(error)") }

        let pretty = format == "pretty", colour = pretty && isatty(1) == 1
        let printing = Task { [seenFile] in
            let out = FileHandle.standardOutput
            // Printed (and remembered) before the stream asks for the next event, which
            // commits this one: a crash in between prints it again, unless --seen remembers it.
            for await e in stream {
                if pretty {
                    guard let envelope = try? JSONParser.parse([UInt8](e.envelope)) else { continue }
                    out.write(Data((MFAEventLine.format(envelope, colour: colour).text + "\n").utf8))
                } else {
                    out.write(e.envelope + Data([0x0A]))
                }
                if let seenFile {
                    seenFile.write(Data((e.id + "\n").utf8))
                    try? seenFile.synchronize()
                }
            }
        }
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let sources = [SIGTERM, SIGINT].map { sig in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { printing.cancel() }
            source.resume()
            return source
        }
        defer { sources.forEach { $0.cancel() } }
        await printing.value
    }
}
