import ArgumentParser

@main
struct CAMFA: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "camfa",
        abstract: "Continuous adaptive MFA: UEBA events in, authing.security.mfa events out.",
        subcommands: [RunCommand.self, BrokerCommand.self, DevCommand.self, SimulateCommand.self, PolicyCommand.self, ReplayCommand.self, DetectionReportCommand.self, SubscribeCommand.self, ConfigCommand.self, StateCommand.self, ApiKeyCommand.self, TokenKeyCommand.self]
    )
}
