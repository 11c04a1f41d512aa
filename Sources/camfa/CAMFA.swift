import ArgumentParser

@main
struct CAMFA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "camfa",
        abstract: "Continuous adaptive MFA: UEBA events in, authing.security.mfa events out.",
        subcommands: [PolicyCommand.self, ReplayCommand.self, SimulateCommand.self, ConfigCommand.self, BenchCommand.self]
    )
}

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "In-process benchmarks (the end-to-end one is `make bench`).",
        subcommands: [EngineBenchCommand.self]
    )
}
