import ArgumentParser
import CAMFACore
import CAMFADaemon
import CAMFAKafka
import CAMFASimulator
import Foundation
import Logging

/// Synthetic UEBA traffic, deterministic for a seed. With --bootstrap it produces to Kafka
/// at --rate events/s, stamped with the current time; without, it writes JSON lines to
/// stdout (for `camfa replay` and fixtures) with event times from --start.
struct SimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Generate realistic UEBA events with every DESIGN.md scenario injected.")

    @Option(help: "Kafka bootstrap servers; without it, events go to stdout as JSON lines.") var bootstrap: String?
    @Option(help: "Topic to produce to (with --bootstrap).") var topic: String = "camfa.ueba"
    @Option(help: "Number of events (default 10000 when --duration is not given).") var events: Int?
    @Option(help: "Produce for this many seconds instead of a number of events (with --bootstrap).") var duration: Double?
    @Option(help: "Events per second (of event time; with --bootstrap also of wall time).") var rate: Double = 1_000
    @Option(help: "Number of simulated users.") var users: Int = 1_000
    @Option(help: "PRNG seed: the same seed gives the same events.") var seed: UInt64 = 1
    @Option(help: "Event time of the first event for stdout output, epoch ms (default: 2026-01-01T00:00:00Z).")
    var start: Int64 = 1_767_225_600_000
    @Option(help: "Write a labelled month of logins instead (legitimate behaviours and account takeovers, issue 23): events to stdout, one label per login to this file, for camfa detection-report.")
    var labelled: String?
    @Option(help: "Days of the labelled stream.") var days: Int = 30
    @Option(help: "Population mix of the labelled stream: office, remote or travelling.") var mix: String = "office"

    func validate() throws {
        if events != nil && duration != nil { throw ValidationError("give --events or --duration, not both") }
        if duration != nil && bootstrap == nil { throw ValidationError("--duration needs --bootstrap (stdout output is counted in --events)") }
        guard rate > 0 else { throw ValidationError("--rate must be positive") }
        guard users >= 1 else { throw ValidationError("--users must be at least 1") }
        if let events, events < 0 { throw ValidationError("--events must not be negative") }
        if labelled != nil, bootstrap != nil || events != nil || duration != nil {
            throw ValidationError("--labelled writes a whole stream to stdout: no --bootstrap, --events or --duration")
        }
        guard days >= 7 else { throw ValidationError("--days must be at least 7") }
        guard LabelledStream.mixes.contains(mix) else { throw ValidationError("--mix must be one of \(LabelledStream.mixes.joined(separator: ", "))") }
    }

    func run() throws {
        if let labelled {
            try writeLabelled(to: labelled)
            return
        }
        if let bootstrap {
            let limit = events ?? (duration == nil ? 10_000 : Int.max)
            let deadline = duration.map { Date().addingTimeInterval($0) }
            let produced = Counter()
            let sim = SimulatorConfiguration(seed: seed, users: users, startTime: Int64(Date().timeIntervalSince1970 * 1000), eventsPerSecond: rate)
            try SimulatedTraffic.produce(
                bootstrap: bootstrap, topic: topic, configuration: sim,
                until: { produced.value >= limit || deadline.map { Date() >= $0 } == true },
                produced: produced, logger: Logger(label: "camfa.simulate"))
            FileHandle.standardError.write(Data("produced \(produced.value) events to \(topic)\n".utf8))
            return
        }
        var sim = Simulator(SimulatorConfiguration(seed: seed, users: users, startTime: start, eventsPerSecond: rate))
        var out = [UInt8]()
        out.reserveCapacity(1 << 16)
        let stdout = FileHandle.standardOutput
        var perScenario: [String: Int] = [:]
        let count = events ?? 10_000
        for _ in 0..<count {
            let next = sim.next()
            perScenario[next.scenario.rawValue, default: 0] += 1
            out += next.event.jsonBytes()
            out.append(0x0A)
            if out.count >= 1 << 16 {
                stdout.write(Data(out))
                out.removeAll(keepingCapacity: true)
            }
        }
        stdout.write(Data(out))
        let summary = perScenario.keys.sorted().map { "\($0)=\(perScenario[$0]!)" }.joined(separator: " ")
        FileHandle.standardError.write(Data("simulated \(count) events by scenario: \(summary)\n".utf8))
    }
}

extension SimulateCommand {
    func writeLabelled(to path: String) throws {
        let c = LabelledStream.configuration(seed: seed, users: users, days: days, startTime: start, mix: mix)!
        let stream = LabelledStream(c)
        var events = [UInt8](), labels = [UInt8]()
        var perBehaviour: [String: Int] = [:]
        for l in stream.logins {
            events += l.event.jsonBytes()
            events.append(0x0A)
            labels += JSONWriter.encode(.map(ValueMap([
                ("user", .string(l.label.user)), ("requestDate", .int(l.label.requestDate)), ("behaviour", .string(l.label.behaviour)),
                ("attack", .bool(l.label.attack)), ("success", .bool(l.label.success)),
            ])))
            labels.append(0x0A)
            perBehaviour[l.label.behaviour, default: 0] += 1
        }
        guard FileManager.default.createFile(atPath: path, contents: Data(labels)) else {
            printError("\(path): cannot write")
            throw ExitCode(1)
        }
        FileHandle.standardOutput.write(Data(events))
        let summary = perBehaviour.keys.sorted().map { "\($0)=\(perBehaviour[$0]!)" }.joined(separator: " ")
        FileHandle.standardError.write(Data("simulated \(stream.logins.count) labelled logins of \(users) users over \(days) days (\(mix) mix): \(summary)\n".utf8))
    }
}

/// Simulated events produced to Kafka in real time: each is sent when its requestDate
/// comes, so the daemon sees "now" events (and its future-skew check passes).
enum SimulatedTraffic {
    static func produce(
        bootstrap: String, topic: String, configuration: SimulatorConfiguration, until done: () -> Bool,
        produced: Counter, logger: Logger
    ) throws {
        let producer = try KafkaProducer(config: KafkaConfig(bootstrapServers: bootstrap), logger: logger)
        var sim = Simulator(configuration)
        var token: UInt64 = 0
        while !done() {
            let e = sim.next().event
            let wait = Double(e.requestDate - Int64(Date().timeIntervalSince1970 * 1000)) / 1000
            if wait > 0.002 { Thread.sleep(forTimeInterval: min(wait, 0.5)) }
            token += 1
            try producer.produce(topic: topic, key: Array(e.originalIdentity.utf8), value: e.jsonBytes(), token: token)
            produced.add()
            if token % 256 == 0 {
                for r in producer.poll(timeoutMs: 0) where r.error != nil { logger.error("delivery failed: \(r.error!)") }
            }
        }
        if !((try? producer.flush(timeoutMs: 10_000)) ?? false) {
            logger.error("not every simulated event was acknowledged before the flush timeout")
        }
    }
}
