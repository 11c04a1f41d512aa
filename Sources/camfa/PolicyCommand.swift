import ArgumentParser
import CAMFACore
import CAMFAPolicyFiles
import Foundation

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Work with policy and flow files.",
        subcommands: [Validate.self]
    )

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every policy and flow file in DIR; print file:line:col: message per problem.")

        @Argument(help: "A policy directory or a single YAML file.")
        var path: String

        func run() throws {
            do {
                let set = try PolicyLoader.loadPolicySet(at: path)
                print("ok: \(set.policies.count) policies, \(set.flows.count) flows, \(set.keyspaces.count) keyspaces")
            } catch {
                for e in error.errors { printError(e.description) }
                throw ExitCode(1)
            }
        }
    }
}

func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
