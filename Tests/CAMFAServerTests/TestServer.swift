import CAMFADaemon
import CAMFAServer
import CAMFATokens
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import ServiceLifecycle
import Testing
import CAMFATestSupport

/// Keys for the tests: one per scope, plus one with every scope but the one under test.
struct TestKeys {
    static let evaluate = APIKeys.generate()!
    static let status = APIKeys.generate()!
    static let results = APIKeys.generate()!
    static let admin = APIKeys.generate()!
    static let enroll = APIKeys.generate()!
    static let verify = APIKeys.generate()!
    static let unknown = APIKeys.generate()!
    static let resultsAndStatus = APIKeys.generate()!

    static func key(for scope: Configuration.HTTP.Scope) -> String {
        switch scope {
        case .evaluate: evaluate
        case .status: status
        case .results: results
        case .admin: admin
        case .enroll: enroll
        case .verify: verify
        }
    }

    static var configured: [Configuration.HTTP.APIKey] {
        Configuration.HTTP.Scope.allCases.map {
            Configuration.HTTP.APIKey(name: $0.rawValue, sha256: APIKeys.sha256(key(for: $0)), scopes: [$0])
        } + [Configuration.HTTP.APIKey(name: "results-status", sha256: APIKeys.sha256(resultsAndStatus), scopes: [.results, .status])]
    }
}

enum TestTokens {
    static func make(keys: [MFATokens.SigningKey] = [.generated(kid: "test")]) async throws -> MFATokens {
        try await MFATokens(keys: keys, issuer: "urn:camfa:test", lifetime: 300)
    }
}

struct HTTPReply {
    var status: Int
    var headers: [String: String]
    var body: Data
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    var error: [String: Any] { json["error"] as? [String: Any] ?? [:] }
    var text: String { String(decoding: body, as: UTF8.self) }
    func header(_ name: String) -> String? { headers.first { $0.key.lowercased() == name.lowercased() }?.value }
}

/// Every response a test sees, as `{method, path, status, contentType, body}` lines for
/// scripts/validate-responses.py.
final class ResponseRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []

    func record(method: String, template: String, reply: HTTPReply) {
        let record: [String: Any] = [
            "method": method, "path": template, "status": reply.status,
            "contentType": reply.header("Content-Type") ?? "", "body": reply.text,
        ]
        let line = String(decoding: try! JSONSerialization.data(withJSONObject: record), as: UTF8.self)
        lock.withLock { lines.append(line) }
    }

    var count: Int { lock.withLock { lines.count } }

    /// Runs the validator over everything recorded; an issue per failing response.
    func validateAgainstOpenAPI() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-responses-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: file) }
        try lock.withLock { lines.joined(separator: "\n") + "\n" }.write(to: file, atomically: true, encoding: .utf8)
        guard let (status, text) = try runPython(["scripts/validate-responses.py", "schemas/openapi.yaml", file.path]) else { return }
        #expect(status == 0, "responses do not match schemas/openapi.yaml:\n\(text)")
    }
}

/// Runs the python3 first on PATH (the one scripts/install-deps.sh equips) in the
/// repository root. nil (a skip, with a message) when python3 or its modules are missing,
/// which fails under CI=true instead. Exit status 3 means missing modules.
func runPython(_ arguments: [String]) throws -> (Int32, String)? {
    let ci = ProcessInfo.processInfo.environment["CI"] == "true"
    guard let python = which("python3") else {
        try #require(!ci, "python3 is required under CI")
        print("skipping \(arguments[0]): python3 not found")
        return nil
    }
    let r = try #require(try runTool(python, arguments))
    let text = r.stdout + r.stderr
    let missingModule = r.status == 3 || text.contains("No module named")
    if missingModule {
        try #require(!ci, "python3 modules are missing under CI: \(text)")
        print("skipping \(arguments[0]): \(text)")
        return nil
    }
    return (r.status, text)
}

struct TestClient {
    let base: String
    let session: URLSession
    let recorder: ResponseRecorder

    /// - template: the spec's path template, for the recorder; nil for paths outside the spec.
    func send(_ method: String, _ path: String, template: String?, key: String? = nil, authorization: String? = nil,
              body: Data? = nil, streamed: Bool = false, headers: [String: String] = [:]) async throws -> HTTPReply {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let key { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
        if let authorization { request.setValue(authorization, forHTTPHeaderField: "Authorization") }
        if let body {
            // A stream has no length up front: the body goes chunked, so the server must
            // stop at the limit while reading instead of refusing by Content-Length.
            if streamed { request.httpBodyStream = InputStream(data: body) } else { request.httpBody = body }
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await session.data(for: request)
        let http = response as! HTTPURLResponse
        var headers: [String: String] = [:]
        for (k, v) in http.allHeaderFields { headers["\(k)"] = "\(v)" }
        let reply = HTTPReply(status: http.statusCode, headers: headers, body: data)
        if let template { recorder.record(method: method, template: template, reply: reply) }
        return reply
    }
}

/// Runs the real server on an ephemeral loopback port around `body`, then validates every
/// recorded response against the OpenAPI description.
func withServer(_ configure: (inout Configuration.HTTP) -> Void = { _ in }, backend: TestBackend = TestBackend(),
                session: URLSession? = nil, scheme: String = "http", tokens givenTokens: MFATokens? = nil,
                clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) },
                _ body: (TestClient) async throws -> Void) async throws {
    var http = Configuration.HTTP()
    http.host = "127.0.0.1"
    http.port = 0
    http.apiKeys = TestKeys.configured
    configure(&http)
    var logger = Logger(label: "camfa-http-test")
    logger.logLevel = .warning
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let tokens: MFATokens
    if let givenTokens { tokens = givenTokens } else { tokens = try await TestTokens.make() }
    let service = try HTTPServerService(configuration: http, backend: backend, tokens: tokens, logger: logger, clock: clock,
                                        onListening: { continuation.yield($0) })
    // Stopped the way the daemon stops it: graceful shutdown of its service group.
    let group = ServiceGroup(services: [service], logger: logger)
    let server = Task { try await group.run() }
    var iterator = ports.makeAsyncIterator()
    guard let port = await iterator.next() else { Issue.record("the server did not start"); return }
    let session = session ?? URLSession(configuration: .ephemeral)
    let recorder = ResponseRecorder()
    do {
        try await body(TestClient(base: "\(scheme)://127.0.0.1:\(port)", session: session, recorder: recorder))
    } catch {
        await group.triggerGracefulShutdown()
        _ = await server.result
        throw error
    }
    await group.triggerGracefulShutdown()
    let stopped = await server.result
    #expect(throws: Never.self) { try stopped.get() }
    #expect(recorder.count > 0)
    try recorder.validateAgainstOpenAPI()
}
