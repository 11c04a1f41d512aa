import Foundation

/// One `camfa run` process under test. Progress comes from the daemon's own once-a-second
/// debug line (`progress`, with consumed/processed/users counters), read from its JSON
/// logs: nothing is added per event, and the counts are exact.
final class BenchDaemon: @unchecked Sendable {
    struct Progress {
        /// benchNow() when the line arrived.
        var time: Double
        var consumed: Int
        var processed: Int
        var users: Int
        /// The daemon's CPU seconds when the line arrived.
        var cpu: Double
    }

    /// Where the enrichment data comes from, for the config and the report.
    struct Enrichment {
        var source: String
        var city: String?
        var asn: String?
        var anonymous: String?
        var rules: String?
    }

    static let fetchWaitMaxMs = 5

    let child: BenchChild
    private let lock = NSLock()
    private var series: [Progress] = []
    private var assignments = 0
    private var problems: [String] = []
    private var loaded = (flows: 0, policies: 0)

    init(binary: String, directory: String, name: String, bootstrap: String, input: String, output: String,
         group: String, policies: String, enrichment: Enrichment, maxFutureSkewHours: Int? = nil,
         checkpointIntervalSeconds: Int? = nil, repartition: String? = nil) throws {
        let state = "\(directory)/\(name)-state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        func path(_ p: String?) -> String { p.map { "\"\($0)\"" } ?? "null" }
        // Everything at its default (checkpoints included) but one Kafka property: librdkafka's
        // mock broker answers a fetch that finds no data only after the whole fetch.wait.max.ms
        // (500 ms by default), even when data arrives meanwhile, where a real broker answers
        // at once; left as is, latency would measure the mock.
        let yaml = """
            kafka:
              bootstrap: "\(bootstrap)"
              groupId: \(group)
              properties:
                fetch.wait.max.ms: "\(Self.fetchWaitMaxMs)"
            topics:
              input: \(input)
              output: \(output)
              deadLetter: \(input).dlq
            \(repartition.map { "  repartition: \($0)" } ?? "")
            policies: "\(policies)"
            stateDir: "\(state)"
            \(maxFutureSkewHours.map { "engine:\n  maxFutureSkew: \($0)h" } ?? "")
            \(checkpointIntervalSeconds.map { "checkpoint:\n  interval: \($0)s" } ?? "")
            enrichment:
              cityDatabase: \(path(enrichment.city))
              asnDatabase: \(path(enrichment.asn))
              anonymousIPDatabase: \(path(enrichment.anonymous))
              userAgentRules: \(path(enrichment.rules))
              zones:
                intranet: [10.20.0.0/16]
                vpn: [10.99.0.0/16]
            logging:
              level: debug
              format: json
            http:
              enabled: false

            """
        let config = "\(directory)/\(name).yaml"
        try yaml.write(toFile: config, atomically: true, encoding: .utf8)
        // The reader threads start with the child; lines before `box` is set are only
        // start-up noise (no progress line comes before the group assignment).
        let box = WeakBox()
        child = try BenchChild(name: name, executable: binary, arguments: ["run", "--config", config],
                               log: "\(directory)/\(name).log") { _, line in box.daemon?.read(line) }
        box.daemon = self
    }

    private final class WeakBox: @unchecked Sendable { weak var daemon: BenchDaemon? }

    private func read(_ line: String) {
        guard line.hasPrefix("{"), let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let message = object["message"] as? String else { return }
        let now = benchNow()
        lock.withLock {
            switch message {
            // The key tasks' loop (README "Repartitioning") reports its own progress.
            case "progress" where object["tasks"] as? String != "keys":
                func n(_ k: String) -> Int { Int(object[k] as? String ?? "") ?? 0 }
                series.append(Progress(time: now, consumed: n("consumed"), processed: n("processed"), users: n("users"),
                                       cpu: ProcessCPU.seconds(child.pid) ?? 0))
            case "partitions assigned":
                assignments += 1
            case "camfa pipeline started":
                loaded = (Int(object["flows"] as? String ?? "") ?? 0, Int(object["policies"] as? String ?? "") ?? 0)
            default:
                let level = object["level"] as? String ?? ""
                if ["error", "critical"].contains(level), problems.count < 20 { problems.append(message) }
            }
        }
    }

    var progress: [Progress] { lock.withLock { series } }
    var latest: Progress? { lock.withLock { series.last } }
    var errors: [String] { lock.withLock { problems } }
    /// The flows and policies the daemon loaded (its start-up line).
    var policySet: (flows: Int, policies: Int) { lock.withLock { loaded } }

    /// Waits until `done` holds for the latest progress line (nil on timeout or exit).
    func wait(timeout: Double, until done: (Progress) -> Bool) -> Progress? {
        let deadline = benchNow() + timeout
        while benchNow() < deadline, child.isRunning {
            if let p = latest, done(p) { return p }
            usleep(50_000)
        }
        return latest.flatMap { done($0) ? $0 : nil }
    }

    /// Waits for the group assignment (and the first progress line after it).
    func waitAssigned(timeout: Double) -> Bool {
        let deadline = benchNow() + timeout
        while benchNow() < deadline, child.isRunning {
            let (a, n) = lock.withLock { (assignments, series.count) }
            if a > 0, n > 0 { return true }
            usleep(50_000)
        }
        return false
    }
}
