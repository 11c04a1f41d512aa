import CAMFAKafka
import CAMFACore
import Foundation
import Logging

/// One JSON object per line on stderr, for log shippers. Keys: time, level, label,
/// message, then the metadata in key order.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String
    private static let lock = NSLock()

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var w = JSONWriter()
        w.beginObject()
        // Not a DateFormatter: building one per line (ICU) cost more than the event the
        // line was about, and a shared one is not thread-safe.
        w.field("time", JSONWriter.timestampString(nanosecondsSinceEpoch: Int64(Date().timeIntervalSince1970 * 1000) * 1_000_000))
        w.field("level", event.level.rawValue)
        w.field("label", label)
        w.field("message", "\(event.message)")
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for (k, v) in merged.sorted(by: { $0.key < $1.key }) { w.field(k, "\(v)") }
        w.endObject()
        var line = w.bytes
        line.append(0x0A)
        Self.lock.withLock { FileHandle.standardError.write(Data(line)) }
    }
}

public enum DaemonLogging {
    /// Installs the log handler the configuration asks for; call once per process.
    public static func bootstrap(_ config: Configuration.Logging) {
        let level = Logger.Level(rawValue: config.level) ?? .info
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = config.format == "json" ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// What a dead letter's log line says. The reason's code and the coordinates always; the
/// record's key (the user id, for UEBA events and results) only with
/// `logging.personalData: true`: personal data stays out of logs by default.
enum DeadLetterLog {
    static func metadata(_ record: KafkaRecord, reason: String, personalData: Bool) -> Logger.Metadata {
        var m: Logger.Metadata = [
            "reason": "\(reason.prefix { $0 != ":" })", "partition": "\(record.partition)", "offset": "\(record.offset)",
        ]
        if personalData, let key = record.key { m["user"] = "\(String(decoding: key.prefix(256), as: UTF8.self))" }
        return m
    }
}
