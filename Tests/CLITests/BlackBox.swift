import Foundation
import Testing
import CAMFATestSupport

/// Black-box helpers: the real `camfa` binary as separate processes, and kcat (Debian's
/// independent Kafka client) as producer and consumer.
enum BlackBox {
    static var kcatAvailable: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/kcat") }

    /// A `camfa broker` process; one per test process, shared (the mock cluster is cheap but
    /// every client's first group join costs ~3 s).
    final class Broker: @unchecked Sendable {
        let process: Process
        let bootstrap: String
        private let out: Pipe
        private let control = Pipe()

        /// `topics` may carry a partition count (`NAME:N`); `faults` lets `inject` drive the
        /// mock cluster's fault injection (use a broker of your own for that).
        init(topics: [String], faults: Bool = false) throws {
            let p = Process()
            p.executableURL = try camfaBinary()
            p.arguments = ["broker", "--brokers", "1", "--partitions", "1"] + topics.flatMap { ["--topic", $0] }
                + (faults ? ["--faults-on-stdin"] : [])
            out = Pipe()
            p.standardOutput = out
            p.standardInput = control
            p.standardError = FileHandle.nullDevice
            try p.run()
            var line = Data()
            while true {
                let c = out.fileHandleForReading.readData(ofLength: 1)
                if c.isEmpty || c == Data([0x0A]) { break }
                line += c
            }
            let text = String(decoding: line, as: UTF8.self)
            guard text.hasPrefix("bootstrap=") else {
                p.terminate()
                throw CLIError(message: "camfa broker printed '\(text)' first")
            }
            process = p
            bootstrap = String(text.dropFirst("bootstrap=".count))
        }

        /// Sends one fault-injection command (`down 1`, `errors produce 5 NOT_LEADER_FOR_PARTITION`…)
        /// and returns the broker's answer line.
        func inject(_ command: String) -> String {
            control.fileHandleForWriting.write(Data((command + "\n").utf8))
            var line = Data()
            while true {
                let c = out.fileHandleForReading.readData(ofLength: 1)
                if c.isEmpty || c == Data([0x0A]) { break }
                line += c
            }
            return String(decoding: line, as: UTF8.self)
        }

        deinit {
            process.terminate()
            process.waitUntilExit()
        }
    }

    nonisolated(unsafe) static var sharedBroker: Broker?
    static let brokerLock = NSLock()

    /// Topics are created up front, one input/output/DLQ trio per test, each with one
    /// partition (IP statistics need all users' events in one partition; see README).
    static func broker() throws -> Broker {
        try brokerLock.withLock {
            if let b = sharedBroker { return b }
            var topics: [String] = []
            for t in testTopics { topics += ["in.\(t)", "out.\(t)", "dlq.\(t)"] }
            for (t, n) in partitionedTopics { topics += ["in.\(t):\(n)", "out.\(t)", "out.\(t).ref", "dlq.\(t)"] }
            topics += HostileInputBlackBoxTests.resultTopics
            topics += ["owners.anyinst:1", "changelog.handoffret:8", "changelog.handoff:8", "changelog.handoff.ref:8", "keys.repart:4", "keys.combo:6", "keys.reco:6", "keys.keyho:2", "changelog.keyho:4", "changelog.keyho.keys:2", "keys.skip:2"]
            let b = try Broker(topics: topics)
            sharedBroker = b
            return b
        }
    }

    static let testTopics = ["usual_location", "extranet", "attribute_routing", "ip_velocity", "session_change",
                             "ip_velocity.again", "bad", "sigterm", "simulate", "http", "http.fuzz", "subscribe", "statusclient", "middleware", "example", "library", "mfaloop", "challengepage"] + HostileInputBlackBoxTests.topics

    /// Checkpoint tests' topics: input with several partitions (the mock keeps ~5 MB per
    /// partition), and an output for the reference run beside the one under test.
    static let partitionedTopics: [(String, Int)] = [("crash", 16), ("rebalance", 8), ("storage", 4), ("handoff", 8), ("repart", 8), ("repart.off", 8), ("combo", 16), ("combo1", 1), ("reco", 16), ("reco1", 1), ("keyho", 4), ("skip", 1), ("anyinst", 8), ("handoffret", 8)]

    /// Produces `key<TAB>value` lines with kcat.
    static func produce(_ bootstrap: String, topic: String, _ messages: [(key: String, value: Data)]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/kcat")
        // -D: a delimiter that cannot occur in the payloads, so values may contain newlines.
        p.arguments = ["-P", "-b", bootstrap, "-t", topic, "-K", "\u{1E}", "-D", "\u{1F}", "-X", "message.max.bytes=4000000", "-q"]
        let input = Pipe()
        p.standardInput = input
        p.standardError = FileHandle.nullDevice
        try p.run()
        var data = Data()
        for m in messages {
            data += Data(m.key.utf8) + Data([0x1E]) + m.value + Data([0x1F])
        }
        input.fileHandleForWriting.write(data)
        try input.fileHandleForWriting.close()
        p.waitUntilExit()
        if p.terminationStatus != 0 { throw CLIError(message: "kcat produce exited \(p.terminationStatus)") }
    }

    struct Message {
        var key: String?
        var value: Data
        var headers: [String: String]
        var offset: Int
    }

    /// Reads a topic from the beginning with kcat until `count` messages arrived (or the
    /// timeout), then reads a little longer to catch any extra ones.
    static func consume(_ bootstrap: String, topic: String, atLeast count: Int, timeout: Double = 40, settle: Double = 2) throws -> [Message] {
        let deadline = Date().addingTimeInterval(timeout)
        var messages: [Message] = []
        var settledAt: Date?
        while Date() < deadline {
            messages = try consumeOnce(bootstrap, topic: topic)
            if messages.count >= count {
                if settledAt == nil { settledAt = Date() }
                if Date().timeIntervalSince(settledAt!) >= settle { break }
            }
            Thread.sleep(forTimeInterval: 0.5)
        }
        return messages
    }

    /// Reads the topic once to its end. kcat's format mode with explicit lengths, not -J:
    /// dead letters may hold invalid UTF-8, which JSON output cannot carry.
    static func consumeOnce(_ bootstrap: String, topic: String) throws -> [Message] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/kcat")
        p.arguments = ["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-X", "fetch.max.bytes=8000000",
                       "-f", "%o\u{1D}%K\u{1D}%S\u{1D}%h\u{1D}%k%s"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = [UInt8](out.fileHandleForReading.readDataToEndOfFile())
        p.waitUntilExit()
        var result: [Message] = []
        var i = 0
        func field() -> String {
            var s: [UInt8] = []
            while i < data.count, data[i] != 0x1D { s.append(data[i]); i += 1 }
            i += 1
            return String(decoding: s, as: UTF8.self)
        }
        while i < data.count {
            let offset = Int(field()) ?? -1
            let keyLength = Int(field()) ?? -1
            let valueLength = max(0, Int(field()) ?? 0)
            let headerText = field()
            var key: String?
            if keyLength >= 0, i + keyLength <= data.count {
                key = String(decoding: data[i..<(i + keyLength)], as: UTF8.self)
                i += keyLength
            }
            let end = min(data.count, i + valueLength)
            let value = Data(data[i..<end])
            i = end
            var headers: [String: String] = [:]
            // kcat prints headers as name=value,name=value; camfa's names all start with "camfa.".
            if headerText != "" {
                var parts: [String] = []
                for piece in headerText.components(separatedBy: ",") {
                    if piece.contains("="), piece.hasPrefix("camfa.") || piece.hasPrefix("ce_") || parts.isEmpty { parts.append(piece) }
                    else if !parts.isEmpty { parts[parts.count - 1] += "," + piece }
                }
                for h in parts {
                    let kv = h.split(separator: "=", maxSplits: 1).map(String.init)
                    headers[kv[0]] = kv.count > 1 ? kv[1] : ""
                }
            }
            result.append(Message(key: key, value: value, headers: headers, offset: offset))
        }
        return result
    }

    /// A `camfa run` process with a config naming this test's topics.
    final class Daemon {
        /// A short session, so a test that kills a daemon sees its partitions move within
        /// seconds; a test whose group must stay settled passes `steadyGroup`.
        static let defaultKafkaProperties = ["session.timeout.ms": "6000", "heartbeat.interval.ms": "500"]
        /// A session long enough that a loaded CI machine (two cores, suites in parallel)
        /// starving a daemon or the broker for seconds does not end it: no member is killed
        /// in such a test, and a lost assignment there replays events and publishes them twice.
        static let steadyGroup = ["session.timeout.ms": "30000", "heartbeat.interval.ms": "1000"]
        let process: Process
        let stderrURL: URL
        let dir: URL

        init(bootstrap: String, name: String, group: String, output: String? = nil, stateDir: String? = nil,
             environment: [String: String] = [:], kafkaProperties: [String: String] = [:], extraConfig: String = "",
             policies: String? = nil, results: String? = nil, changelog: String? = nil, repartition: String? = nil,
             owners: String? = nil) throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-bb-\(name)-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let config = """
            kafka:
              bootstrap: "\(bootstrap)"
              groupId: \(group)
              properties:
            \(Self.defaultKafkaProperties.merging(kafkaProperties) { $1 }.sorted { $0.key < $1.key }.map { "    \($0.key): \"\($0.value)\"" }.joined(separator: "\n"))
            topics:
              input: in.\(name)
              output: \(output ?? "out.\(name)")
              deadLetter: dlq.\(name)
              results: \(results ?? "results.\(name)")
            \(changelog.map { "  changelog: \($0)" } ?? "")
            \(repartition.map { "  repartition: \($0)" } ?? "")
            \(owners.map { "  owners: \($0)" } ?? "")
            policies: \(policies ?? packageRoot.appendingPathComponent("policies/examples").path)
            stateDir: \(stateDir ?? dir.appendingPathComponent("state").path)
            enrichment:
              cityDatabase: null
              asnDatabase: null
              anonymousIPDatabase: null
              userAgentRules: null
              zones:
                intranet: [10.20.0.0/16]
                vpn: [10.99.0.0/16]
            logging:
              level: info
              format: json
            \(extraConfig.contains("http:") ? "" : "http:\n  enabled: false")
            \(extraConfig.contains("security:") || BlackBox.otherBinary ? "" : "security:\n  secretFile: \(try BlackBox.sharedSecretFile())")
            \(extraConfig)
            """
            let configURL = dir.appendingPathComponent("camfa.yaml")
            try config.write(to: configURL, atomically: true, encoding: .utf8)
            stderrURL = dir.appendingPathComponent("stderr.log")
            FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
            let p = Process()
            p.executableURL = try camfaBinary()
            p.arguments = ["run", "--config", configURL.path]
            if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
            p.standardOutput = FileHandle.nullDevice
            p.standardError = try FileHandle(forWritingTo: stderrURL)
            try p.run()
            process = p
        }

        /// SIGTERM and wait; returns the exit status.
        func stop(timeout: Double = 20) -> Int32 {
            process.terminate()
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            return process.terminationStatus
        }

        /// SIGKILL: no shutdown, no final checkpoint, the member stays in the group until its
        /// session times out.
        func crash() {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        var log: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }

        /// The JSON log lines whose message is `message`.
        func logLines(_ message: String) -> [[String: Any]] {
            log.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                .filter { $0["message"] as? String == message }
        }

        deinit {
            if process.isRunning { _ = stop() }
        }
    }

    /// Produces with confluent-kafka (scripts/kafka-produce.py), which can set what kcat
    /// cannot: each record's CreateTime (ms) and headers.
    struct RawRecord {
        var key: String?
        var value: String
        var headers: [String: String] = [:]
        var timestamp: Int64?
    }

    static func produceRaw(_ bootstrap: String, topic: String, _ records: [RawRecord]) throws {
        var lines = ""
        for r in records {
            var o: [String: Any] = ["value": r.value, "headers": r.headers]
            if let k = r.key { o["key"] = k }
            if let t = r.timestamp { o["timestamp"] = t }
            lines += String(decoding: try JSONSerialization.data(withJSONObject: o), as: UTF8.self) + "\n"
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", packageRoot.appendingPathComponent("scripts/kafka-produce.py").path, bootstrap, topic]
        let input = Pipe(), err = Pipe()
        p.standardInput = input
        p.standardError = err
        try p.run()
        input.fileHandleForWriting.write(Data(lines.utf8))
        try input.fileHandleForWriting.close()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        if p.terminationStatus != 0 { throw CLIError(message: "kafka-produce.py exited \(p.terminationStatus): \(String(decoding: e, as: UTF8.self))") }
    }

    /// Skips (or fails under CI) when Python's confluent-kafka is missing.
    static func requireConfluentKafka() -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import confluent_kafka"]
        p.standardError = FileHandle.nullDevice
        if (try? p.run()) != nil { p.waitUntilExit() }
        if p.terminationStatus == 0 { return true }
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            Issue.record("Python's confluent-kafka is not installed; `make test` installs it (scripts/install-deps.sh)")
        }
        return false
    }

    /// CAMFA_BINARY names a build to test instead of this one (an older one, to show an
    /// attack working there): it may not know the `security` section, so none is written.
    static var otherBinary: Bool { ProcessInfo.processInfo.environment["CAMFA_BINARY"] != nil }

    /// One secret for every daemon of the test process, as an operator gives every instance
    /// of a group: independent runs then issue the same challenge ids.
    static func sharedSecretFile() throws -> String {
        try brokerLock.withLock {
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-bb-secret-\(getpid())")
            if !FileManager.default.fileExists(atPath: url.path) {
                try (UUID().uuidString + UUID().uuidString).write(to: url, atomically: true, encoding: .utf8)
            }
            return url.path
        }
    }

    /// Skips (or fails under CI) when kcat is missing.
    static func requireKcat() -> Bool {
        if kcatAvailable { return true }
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            Issue.record("kcat is not installed; `make test` installs it (apt-get install kcat)")
        }
        return false
    }
}
