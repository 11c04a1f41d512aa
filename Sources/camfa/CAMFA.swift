import ArgumentParser

@main
struct CAMFA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "camfa",
        abstract: "Continuous adaptive MFA: UEBA events in, authing.security.mfa events out.",
        subcommands: []
    )
}
