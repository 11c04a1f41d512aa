import Foundation
import Testing
import CAMFATestSupport

/// The `camfa` binary built beside this test bundle (`swift build` builds it with the tests).
func camfaBinary() throws -> URL {
    // To show an attack working on an older build: CAMFA_BINARY=/path/to/old/camfa.
    if let path = ProcessInfo.processInfo.environment["CAMFA_BINARY"] { return URL(fileURLWithPath: path) }
    let candidates = [
        Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("camfa"),
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("camfa"),
        packageRoot.appendingPathComponent(".build/debug/camfa"),
    ]
    for c in candidates where FileManager.default.isExecutableFile(atPath: c.path) { return c }
    throw CLIError(message: "camfa binary not found; run `swift build` first (looked in \(candidates.map(\.path)))")
}

struct CLIError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// Runs camfa with arguments and optional stdin; returns its exit status and output.
func runCamfa(_ arguments: [String], stdin: Data? = nil) throws -> ToolResult {
    let binary = try camfaBinary()
    guard let r = try runTool(binary.path, arguments, stdin: stdin) else { throw CLIError(message: "cannot run \(binary.path)") }
    return r
}

/// Runs `camfa-bench`, which is built beside `camfa` and runs that one as broker and daemon.
func runCamfaBench(_ arguments: [String]) throws -> ToolResult {
    let binary = try camfaBinary().deletingLastPathComponent().appendingPathComponent("camfa-bench")
    guard let r = try runTool(binary.path, arguments) else { throw CLIError(message: "cannot run \(binary.path)") }
    return r
}
