import ArgumentParser
import Foundation

/// The benchmarks, a binary of their own so that the product carries no benchmark code.
/// `e2e` runs the `camfa` binary beside this one as broker and daemon.
@main
struct CAMFABench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "camfa-bench",
        abstract: "camfa's benchmarks: in-process (engine, enrich, checkpoint) and end to end (e2e).",
        subcommands: [EngineBenchCommand.self, EnrichBenchCommand.self, CheckpointBenchCommand.self, E2EBenchCommand.self]
    )

    /// This binary's path, for the child processes of its own subcommands.
    static func ownExecutable() -> String {
        if let p = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return p }
        let path = CommandLine.arguments[0]
        return path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }

    /// The product binary: `camfa` in the same directory (both are built by `swift build`).
    static func productExecutable() -> String {
        URL(fileURLWithPath: ownExecutable()).deletingLastPathComponent().appendingPathComponent("camfa").path
    }
}

func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
