import ArgumentParser

@main
struct CAMFA: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "camfa",
        abstract: "Continuous adaptive MFA: UEBA events in, authing.security.mfa events out.",
        subcommands: [RunCommand.self, BrokerCommand.self, DevCommand.self, SimulateCommand.self, PolicyCommand.self, ReplayCommand.self, DetectionReportCommand.self, ConfigCommand.self, BenchCommand.self, StateCommand.self, ApiKeyCommand.self]
    )
}

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: in-process (engine, enrich, checkpoint) and end to end (e2e).",
        subcommands: [EngineBenchCommand.self, EnrichBenchCommand.self, CheckpointBenchCommand.self, E2EBenchCommand.self]
    )
}
