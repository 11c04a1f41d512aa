import ArgumentParser
import CAMFACore
import CAMFASimulator
import Foundation

/// Synthetic UEBA traffic, deterministic for a seed. Without --bootstrap it writes JSON
/// lines to stdout (for `camfa replay` and fixtures).
struct SimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Generate realistic UEBA events with every DESIGN.md scenario injected.")

    @Option(help: "Number of events.") var events: Int = 10_000
    @Option(help: "Number of simulated users.") var users: Int = 1_000
    @Option(help: "PRNG seed: the same seed gives the same events.") var seed: UInt64 = 1
    @Option(help: "Event time of the first event, epoch ms (default: 2026-01-01T00:00:00Z).")
    var start: Int64 = 1_767_225_600_000
    @Option(help: "Simulated events per second of event time.") var rate: Double = 1_000

    func run() throws {
        var sim = Simulator(SimulatorConfiguration(seed: seed, users: users, startTime: start, eventsPerSecond: rate))
        var out = [UInt8]()
        out.reserveCapacity(1 << 16)
        let stdout = FileHandle.standardOutput
        var perScenario: [String: Int] = [:]
        for _ in 0..<events {
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
        FileHandle.standardError.write(Data("simulated \(events) events by scenario: \(summary)\n".utf8))
    }
}
