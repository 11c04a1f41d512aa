import ArgumentParser
import CAMFADaemon
import CAMFAPolicyFiles
import Foundation

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Work with the daemon's configuration file.",
        subcommands: [Check.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a configuration file (and the policies it names) without starting.")

        @Argument(help: "The configuration file.") var path: String
        @Flag(help: "Do not load the policy directory the file names.") var skipPolicies = false

        func run() throws {
            let config: Configuration
            do { config = try Configuration.load(file: path) } catch {
                for e in error.errors { printError(e.description) }
                throw ExitCode(1)
            }
            if !skipPolicies {
                do { _ = try PolicyLoader.loadPolicySet(at: config.policies) } catch {
                    for e in error.errors { printError(e.description) }
                    throw ExitCode(1)
                }
            }
            print("ok: \(path)")
        }
    }
}
