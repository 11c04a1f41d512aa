import Foundation
import Testing

var packageRoot: URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

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

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs camfa with arguments and optional stdin; returns its exit status and output.
func runCamfa(_ arguments: [String], stdin: Data? = nil) throws -> RunResult {
    let p = Process()
    p.executableURL = try camfaBinary()
    p.arguments = arguments
    p.currentDirectoryURL = packageRoot
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    let input = Pipe()
    p.standardInput = input
    try p.run()
    if let stdin { input.fileHandleForWriting.write(stdin) }
    try input.fileHandleForWriting.close()
    // Read before waiting so a full pipe cannot deadlock the child.
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}
