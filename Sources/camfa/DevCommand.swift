import ArgumentParser
import CAMFACore
import CAMFADaemon
import CAMFAKafka
import CAMFASimulator
import Foundation
import Logging
import ServiceLifecycle

/// `camfa dev`: the mock broker, the daemon and the simulator in one process, printing
/// every MFA event the daemon publishes as one readable line, read back from the topic.
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev", abstract: "Broker + daemon + simulated traffic in one process; prints the MFA events published.")

    @Option(help: "Stop after this many seconds (default: until Ctrl-C).") var duration: Double?
    @Option(help: "Simulated events per second.") var rate: Double = 300
    @Option(help: "Simulated users.") var users: Int = 300
    @Option(help: "Simulator seed.") var seed: UInt64 = 7
    @Option(help: "Policy directory.") var policies: String = "policies/examples"
    @Option(help: "Directory with GeoLite2-City.mmdb and regexes.yaml (make demo fetches them).") var data: String = ".data"
    @Flag(help: "Log at info level (default: warnings only, so the MFA lines stand out).") var verbose = false

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        var c = Configuration()
        c.logging.level = verbose ? "info" : "warning"
        DaemonLogging.bootstrap(c.logging)
        let logger = Logger(label: "camfa.dev")

        let cluster = try MockCluster(brokers: 1, logger: logger)
        // One input partition: statistics keyed by IP need every user's events in one
        // partition until the repartition step exists (README, "Partitions and keys").
        try cluster.createTopic(c.topics.input, partitions: 1)
        for t in [c.topics.output, c.topics.deadLetter, c.topics.results] {
            try cluster.createTopic(t, partitions: 4)
        }
        c.kafka.bootstrap = cluster.bootstrapServers
        c.policies = policies
        c.stateDir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-dev-\(getpid())").path
        let city = (data as NSString).appendingPathComponent("GeoLite2-City.mmdb")
        let rules = (data as NSString).appendingPathComponent("regexes.yaml")
        c.enrichment.cityDatabase = city
        c.enrichment.asnDatabase = nil
        c.enrichment.anonymousIPDatabase = nil
        c.enrichment.userAgentRules = rules
        c.enrichment.zones = ["intranet": [Simulator.officeNetwork], "vpn": [Simulator.vpnNetwork]]
        let pipeline = try DaemonSetup.pipeline(c, secret: try DaemonSetup.secret(c, logger: logger), logger: logger)

        let colour = isatty(1) == 1
        print("camfa dev: broker \(cluster.bootstrapServers), \(Int(rate)) events/s from \(users) simulated users; Ctrl-C stops")
        let view = MFAEventView(configuration: c, colour: colour, logger: logger)
        let traffic = TrafficService(configuration: c, rate: rate, users: users, seed: seed, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: PipelineService(pipeline: pipeline)), .init(service: view), .init(service: traffic),
        ]
        if let duration { services.append(.init(service: Timer(seconds: duration), successTerminationBehavior: .gracefullyShutdownGroup)) }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        print(view.summary(counters: pipeline.counters, produced: traffic.produced.value))
        // The cluster is left to process exit: clients still closing would log connection errors.
        withExtendedLifetime(cluster) {}
    }
}

/// Ends the group after a fixed time (`camfa dev --duration`).
struct Timer: Service {
    let seconds: Double
    func run() async throws {
        try? await Task.sleep(for: .seconds(seconds))
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add(_ k: Int = 1) { lock.withLock { n += k } }
    var value: Int { lock.withLock { n } }
}

/// Produces simulated events at `rate`, stamped with the current time.
final class TrafficService: Service, @unchecked Sendable {
    let configuration: Configuration
    let rate: Double, users: Int, seed: UInt64
    let logger: Logger
    let produced = Counter()

    init(configuration: Configuration, rate: Double, users: Int, seed: UInt64, logger: Logger) {
        self.configuration = configuration
        self.rate = rate
        self.users = users
        self.seed = seed
        self.logger = logger
    }

    func run() async throws {
        try await DedicatedThread.run(name: "camfa-dev-traffic") { stop in try self.loop(stop) }
    }

    private func loop(_ stop: StopSignal) throws {
        try SimulatedTraffic.produce(
            bootstrap: configuration.kafka.bootstrap, topic: configuration.topics.input,
            configuration: SimulatorConfiguration(seed: seed, users: users, startTime: Int64(Date().timeIntervalSince1970 * 1000), eventsPerSecond: rate),
            until: { stop.isSet }, produced: produced, logger: logger)
    }
}

/// Reads `authing.security.mfa` back and prints one line per MFA event.
final class MFAEventView: Service, @unchecked Sendable {
    let configuration: Configuration
    let colour: Bool
    let logger: Logger
    private let lock = NSLock()
    private var perReason: [String: Int] = [:]
    private var total = 0

    init(configuration: Configuration, colour: Bool, logger: Logger) {
        self.configuration = configuration
        self.colour = colour
        self.logger = logger
    }

    func run() async throws {
        try await DedicatedThread.run(name: "camfa-dev-view") { stop in try self.loop(stop) }
    }

    private func loop(_ stop: StopSignal) throws {
        let consumer = try KafkaConsumer(
            config: KafkaConfig(bootstrapServers: configuration.kafka.bootstrap, [("auto.offset.reset", "earliest"), ("session.timeout.ms", "6000")]),
            groupID: "camfa-dev-view", logger: logger)
        try consumer.subscribe([configuration.topics.output])
        let batch = KafkaBatch()
        while !stop.isSet {
            _ = consumer.poll(into: batch, maxMessages: 500, timeoutMs: 200)
            for r in batch.records {
                guard let v = r.value, let envelope = try? JSONParser.parse([UInt8](v)) else { continue }
                let line = MFAEventLine.format(envelope, colour: colour)
                lock.withLock {
                    total += 1
                    perReason[line.reason, default: 0] += 1
                }
                print(line.text)
            }
            batch.release()
            fflush(nil)
        }
        _ = consumer.close(timeoutSeconds: 3)
    }

    func summary(counters: PipelineCounters, produced: Int) -> String {
        lock.withLock {
            let reasons = perReason.keys.sorted().map { "\($0)=\(perReason[$0]!)" }.joined(separator: " ")
            return "\nproduced \(produced) events; daemon processed \(counters.processed), dead-lettered \(counters.deadLettered); "
                + "\(total) MFA events published: \(reasons.isEmpty ? "none" : reasons)"
        }
    }
}

/// One readable line from a published MFA event envelope.
enum MFAEventLine {
    static func format(_ envelope: Value, colour: Bool) -> (text: String, reason: String) {
        func paint(_ s: String, _ code: String) -> String { colour ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }
        guard case .map(let e) = envelope, case .map(let data)? = e[string: "data"] else { return ("(unreadable MFA event)", "?") }
        let user = str(e[string: "subject"])
        let app = str(data[string: "appId"])
        let flow = str(data[string: "flow"])
        var methods: [String] = []
        if case .list(let l)? = data[string: "methods"] { methods = l.map(str) }
        var reason = flow
        if case .map(let r)? = data[string: "returns"], case .string(let s)? = r[string: "reason"] { reason = s }
        var why: [String] = []
        if case .list(let ex)? = data[string: "explanation"] {
            for p in ex {
                guard case .map(let pm) = p else { continue }
                var nums: [String] = []
                if case .map(let stats)? = pm[string: "statistics"] {
                    for (k, v) in stats.entries {
                        if case .map(let sv) = v { nums.append("\(str(k))=\(PrettyDecision.short(sv[string: "current"] ?? .null))") }
                    }
                }
                why.append(nums.isEmpty ? str(pm[string: "policy"]) : "\(str(pm[string: "policy"]))(\(nums.joined(separator: " ")))")
            }
        }
        // mfa, deny or cleared (schemas/mfa-event.schema.json).
        let action = str(data[string: "action"])
        let label = action == "mfa" ? "MFA" : action.uppercased()
        let text = "\(paint(label, action == "cleared" ? "1;32" : action == "deny" ? "1;31" : "1;33")) \(paint(user, "36")) app=\(app) methods=\(methods.joined(separator: ">")) flow=\(flow) reason=\(paint(reason, "1")) \(why.joined(separator: "; "))"
        return (text, reason)
    }

    static func str(_ v: Value?) -> String {
        switch v {
        case .string(let s)?: return s
        case .int(let i)?: return String(i)
        case nil, .null?: return "-"
        default: return PrettyDecision.short(v!)
        }
    }
}
