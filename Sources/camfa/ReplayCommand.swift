import ArgumentParser
import CAMFACore
import CAMFADaemon
import CAMFAEnrich
import CAMFAPolicyFiles
import Foundation

/// Runs the engine over a JSON-lines file of UEBA events and prints one JSON line of
/// decisions per input line: the policy author's test bench, with no Kafka involved.
/// With `--config` every line passes the daemon's own intake (`Intake`: limits, the time
/// bound against this machine's clock, enrichment), so the offline figures are the
/// daemon's; without it the events' own fields are taken as they are.
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Evaluate the policies over FILE.jsonl; one JSON line of decisions per event on stdout.")

    @Option(help: "The policy directory (default with --config: the configuration's).")
    var policies: String?

    @Option(help: "A daemon configuration (camfa.yaml): replay through its intake and engine settings.")
    var config: String?

    @Option(help: "Which trigger's flows to run: ueba or http.")
    var trigger: String = "ueba"

    @Option(help: "json: one JSON line per event; pretty: one readable line per MFA challenge issued.")
    var format: String = "json"

    @Argument(help: "UEBA events, one JSON object per line ('-' for stdin).")
    var file: String

    func run() throws {
        guard format == "json" || format == "pretty" else {
            printError("--format must be json or pretty")
            throw ExitCode(2)
        }
        guard let trig = FlowTrigger(rawValue: trigger) else {
            printError("--trigger must be ueba or http")
            throw ExitCode(2)
        }
        var c = Configuration()
        var resources: EnrichmentResources?
        if let config {
            do { c = try Configuration.load(file: config) } catch {
                for e in error.errors { printError(e.description) }
                throw ExitCode(1)
            }
            do { resources = try EnrichmentResources(configuration: c.enrichment.resourcesConfiguration) } catch {
                printError("\(config): \(error)")
                throw ExitCode(1)
            }
            for w in resources?.warnings ?? [] { printError("warning: \(w)") }
        } else {
            c.enrichment.trustProducer = true
        }
        guard let directory = policies ?? config.map({ _ in c.policies }) else {
            printError("--policies is required without --config")
            throw ExitCode(2)
        }
        let set: PolicySet
        do { set = try PolicyLoader.loadPolicySet(at: directory, options: c.engine.options) } catch {
            for e in error.errors { printError(e.description) }
            throw ExitCode(1)
        }
        let intake = Intake(configuration: c, enrichment: resources, clock: { Int64(Date().timeIntervalSince1970 * 1000) })
        let data: Data
        if file == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let d = FileManager.default.contents(atPath: file) else {
                printError("\(file): cannot read")
                throw ExitCode(1)
            }
            data = d
        }
        // Challenge ids outside the daemon mean nothing to a subscriber: a key of this run
        // only, so no replay output can be mistaken for (or used to guess) a daemon's ids.
        var rng = SystemRandomNumberGenerator()
        let engine = Engine(policySet: set, challengeKey: ChallengeKey(secret: (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }))
        var state = PartitionState(policySet: set)
        let bytes = [UInt8](data)
        let lineStarts = Self.lines(bytes)
        let progress = ProgressBar(total: lineStarts.count)
        var out = [UInt8]()
        out.reserveCapacity(1 << 16)
        let stdout = FileHandle.standardOutput
        let pretty = format == "pretty"
        let colour = pretty && isatty(1) == 1
        var counts: [String: Int] = [:]
        for (done, (lineNumber, range)) in lineStarts.enumerated() {
            var result = ValueMap()
            result[string: "line"] = .int(Int64(lineNumber))
            switch bytes[range].withUnsafeBytes({ intake.admit($0) }) {
            case .success(let event):
                result[string: "user"] = .string(event.originalIdentity)
                result[string: "requestDate"] = .int(event.requestDate)
                switch engine.process(event, coordinates: "\(file):\(lineNumber)", trigger: trig, state: &state) {
                case .decided(let decisions):
                    result[string: "decisions"] = .list(decisions.map(\.jsonValue))
                    if pretty {
                        for d in decisions where d.action != .allow && !d.suppressedByCooldown {
                            counts[d.flow, default: 0] += 1
                            out += Array(PrettyDecision.line(d, event: event, colour: colour).utf8)
                            out.append(0x0A)
                        }
                    }
                case .rejected(let reason):
                    result[string: "rejected"] = .map(ValueMap([("code", .string(reason.code.rawValue)), ("message", .string(reason.message))]))
                }
            case .failure(let refused):
                // What the daemon dead-letters: malformed or over a limit, or outside the time bounds.
                var why = ValueMap([("code", .string(refused.detail)), ("message", .string(refused.reason))])
                if let f = refused.field { why[string: "field"] = .string(f) }
                result[string: refused.code == .invalid ? "invalid" : "rejected"] = .map(why)
            }
            if !pretty {
                out += JSONWriter.encode(.map(result))
                out.append(0x0A)
            }
            if out.count > 1 << 16 {
                stdout.write(Data(out))
                out.removeAll(keepingCapacity: true)
            }
            progress.update(done + 1)
        }
        stdout.write(Data(out))
        progress.finish()
        if pretty {
            let summary = counts.keys.sorted().map { "\($0)=\(counts[$0]!)" }.joined(separator: " ")
            print("\(lineStarts.count) events, non-allow decisions per flow: \(summary.isEmpty ? "none" : summary)")
        }
    }

    /// (1-based line number, byte range) of each non-empty line.
    static func lines(_ bytes: [UInt8]) -> [(Int, Range<Int>)] {
        var out: [(Int, Range<Int>)] = []
        var start = 0
        var number = 0
        for i in 0...bytes.count where i == bytes.count || bytes[i] == 0x0A {
            number += 1
            var end = i
            if end > start, bytes[end - 1] == 0x0D { end -= 1 }
            if end > start { out.append((number, start..<end)) }
            start = i + 1
        }
        return out
    }
}

/// A progress bar on stderr, only when stderr is a terminal (scripts get clean output).
final class ProgressBar {
    let total: Int
    let enabled: Bool
    var lastDrawn = -1

    init(total: Int) {
        self.total = total
        self.enabled = isatty(2) == 1 && total > 0
    }

    func update(_ done: Int) {
        guard enabled else { return }
        let percent = done * 100 / total
        guard percent != lastDrawn else { return }
        lastDrawn = percent
        let width = 40
        let filled = width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        FileHandle.standardError.write(Data("\r[\(bar)] \(percent)% \(done)/\(total)".utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
