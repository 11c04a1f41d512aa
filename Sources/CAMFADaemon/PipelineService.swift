import Foundation
import Logging
import ServiceLifecycle

/// Runs a `Pipeline` on a dedicated thread (the poll thread must never be a cooperative
/// pool thread: it blocks in librdkafka) as a swift-service-lifecycle `Service`. Graceful
/// shutdown asks the loop to stop; `run` returns when it has flushed and committed.
public struct PipelineService: Service {
    public let pipeline: Pipeline

    public init(pipeline: Pipeline) { self.pipeline = pipeline }

    public func run() async throws {
        let pipeline = self.pipeline
        try await withGracefulShutdownHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                let thread = Thread {
                    do {
                        try pipeline.run()
                        continuation.resume()
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
                thread.name = "camfa-poll"
                thread.stackSize = 8 << 20
                thread.start()
            }
        } onGracefulShutdown: {
            pipeline.requestStop()
        }
    }
}

/// One JSON object per line on stderr, for log shippers. Keys: time, level, label,
/// message, then the metadata.
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
        var fields: [(String, String)] = [
            ("time", ISO8601DateFormatter().string(from: Date())), ("level", event.level.rawValue), ("label", label),
            ("message", "\(event.message)"),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        for (k, v) in merged.sorted(by: { $0.key < $1.key }) { fields.append((k, "\(v)")) }
        var line = "{"
        for (i, (k, v)) in fields.enumerated() {
            if i > 0 { line += "," }
            line += "\"\(Self.escape(k))\":\"\(Self.escape(v))\""
        }
        line += "}\n"
        Self.lock.withLock { FileHandle.standardError.write(Data(line.utf8)) }
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out
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
