import CAMFACore
import CAMFADaemon
import Foundation

// Scaffolding every test target shares, so that no suite carries its own copy. No test
// framework here: helpers report absence as nil and the suites decide (skip, or fail
// under CI=true).

/// The package's root directory (the one holding Package.swift).
public let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// CI sets CI=true: there a missing tool or fixture is a failure, not a skip.
public let isCI = ProcessInfo.processInfo.environment["CI"] == "true"

/// Challenge ids in the tests are keyed with a fixed secret: determinism is what they check.
public let testChallengeKey = ChallengeKey(secret: Array("camfa-test-secret".utf8))

/// The daemon's secret in in-process pipelines.
public let testSecret = DaemonSecret(bytes: Array("camfa-test-secret-0123456789abcdef".utf8), origin: "tests")

/// A finished child process.
public struct ToolResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// The first executable called `name` on PATH.
public func which(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// Runs `tool` (a path, or a name looked up on PATH) to completion with optional stdin, in
/// `directory` (default: the package root). nil when the tool is not there.
public func runTool(_ tool: String, _ arguments: [String], stdin: Data? = nil, in directory: URL? = nil) throws -> ToolResult? {
    guard let path = tool.contains("/") ? tool : which(tool), FileManager.default.isExecutableFile(atPath: path) else { return nil }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = arguments
    p.currentDirectoryURL = directory ?? packageRoot
    let out = Pipe(), err = Pipe(), input = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = input
    try p.run()
    if let stdin { input.fileHandleForWriting.write(stdin) }
    try? input.fileHandleForWriting.close()
    // Both pipes drained before waiting, concurrently, so a full one cannot deadlock the child.
    let collected = CollectedOutput()
    let group = DispatchGroup()
    DispatchQueue.global().async(group: group) { collected.setErr(err.fileHandleForReading.readDataToEndOfFile()) }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    p.waitUntilExit()
    return ToolResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                      stderr: String(decoding: collected.err, as: UTF8.self))
}

/// `runTool` on a thread of its own, for async tests: waiting on a child process on one of
/// Swift concurrency's few pool threads starves whatever else needs the pool, such as the
/// HTTP server the child talks to.
public func runToolOffPool(_ tool: String, _ arguments: [String], stdin: Data? = nil) async throws -> ToolResult? {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try runTool(tool, arguments, stdin: stdin) }) }.start()
    }
}

private final class CollectedOutput: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func setErr(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    var err: Data { lock.lock(); defer { lock.unlock() }; return data }
}

/// `<package>/../shared/testdata`: fixtures that are never committed. Absent on a user's
/// fresh clone (the tests skip), required under CI=true (they fail).
public let sharedTestDataRoot = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/testdata")

/// The URL of `relativePath` under the shared test data, or nil when absent.
public func sharedTestData(_ relativePath: String) -> URL? {
    let u = sharedTestDataRoot.appendingPathComponent(relativePath).standardizedFileURL
    return FileManager.default.fileExists(atPath: u.path) ? u : nil
}

/// SplitMix64, the seeded generator of every property test: the same seed gives the same
/// cases on every platform and Swift version (the system generator is not seedable), so a
/// failure replays from the seed in its message.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// In 0..<n (the modulo bias is far below what a test could notice).
    public mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    /// In lo..<hi, from the top 53 bits.
    public mutating func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * Double(next() >> 11) / Double(1 << 53) }
}

/// A fresh directory under the system's temporary directory, removed when the value goes.
public final class TemporaryDirectory: Sendable {
    public let path: String

    public init(_ prefix: String = "camfa-test") throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

extension Data {
    /// RFC 4648 §5 (JWT segments), padding optional.
    public init?(base64URL s: String) {
        var b = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b.count % 4 != 0 { b += "=" }
        self.init(base64Encoded: b)
    }

    public var base64URL: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}

/// A self-signed certificate and key for 127.0.0.1 (an IP SAN) in `dir`, from the openssl
/// CLI; nil when the CLI is missing (the suites skip, or fail under CI).
public func selfSignedCertificate(in dir: URL) throws -> (cert: String, key: String)? {
    guard which("openssl") != nil else { return nil }
    let cert = dir.appendingPathComponent("server.crt").path
    let key = dir.appendingPathComponent("server.key").path
    let r = try runTool("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert])
    return r?.status == 0 ? (cert, key) : nil
}
