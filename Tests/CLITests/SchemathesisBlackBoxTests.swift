import Foundation
import Testing
import CAMFATestSupport

/// Issue 22: an independent OpenAPI fuzzer (schemathesis, from PyPI) against the live
/// daemon, with every check: every schema-valid request must be answered as
/// schemas/openapi.yaml says, and the daemon must stay up.
@Suite(.serialized) struct SchemathesisBlackBoxTests {
    static var schemathesis: URL? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let p = URL(fileURLWithPath: String(dir)).appendingPathComponent("st")
            if FileManager.default.isExecutableFile(atPath: p.path) { return p }
        }
        return nil
    }

    @Test func theOpenAPIFuzzerFindsNothingAndTheDaemonStaysUp() throws {
        guard BlackBox.requireKcat() else { return }
        guard let st = Self.schemathesis else {
            if ProcessInfo.processInfo.environment["CI"] == "true" {
                Issue.record("schemathesis (st) is not installed; `make test` installs it (scripts/install-deps.sh)")
            }
            return
        }
        let broker = try BlackBox.broker()
        let port = HTTPBlackBoxTests.freePort(), key = "camfa-test-fuzz-0123456789abcdef"
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "http.fuzz", group: "bb-fuzz-\(UUID().uuidString)",
                                         kafkaProperties: ["fetch.wait.max.ms": "10"], extraConfig: """
            http:
              address: 127.0.0.1:\(port)
              requestTimeout: 5s
              challengePage:
                enabled: true
              rateLimit:
                perSecond: 0
              apiKeys:
                - name: fuzz
                  hash: "sha256:\(try HTTPBlackBoxTests.sha256(key))"
                  scopes: [evaluate, status, results, admin, enroll, verify]
            """)
        defer { _ = daemon.stop() }
        var ready = false
        for _ in 0..<160 where !ready {
            if let r = try? HTTPBlackBoxTests.request("GET", "http://127.0.0.1:\(port)/readyz", key: key), r.status == 200 { ready = true } else {
                Thread.sleep(forTimeInterval: 0.25)
            }
        }
        try #require(ready, "readyz never answered 200; log:\n\(daemon.log.suffix(2000))")
        // A random code is schema-valid and still wrong: 422 `wrong-code` is the documented
        // answer there, not a rejected valid request.
        let config = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-schemathesis-\(UUID().uuidString).toml")
        try """
            [[operations]]
            include-operation-id = ["confirmTOTP", "verifyChallenge"]
            checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 403, 404, 409, 422, 429]
            """.write(to: config, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: config) }
        let p = Process()
        p.executableURL = st
        p.arguments = ["--config-file", config.path, "run", packageRoot.appendingPathComponent("schemas/openapi.yaml").path, "--url", "http://127.0.0.1:\(port)",
                       "-H", "Authorization: Bearer \(key)", "--checks", "all", "--max-examples", "40",
                       "--generation-deterministic", "--request-timeout", "20", "--no-color"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "schemathesis found failures:\n\(text.suffix(6000))")
        #expect(daemon.process.isRunning, "the daemon died under the fuzzer:\n\(daemon.log.suffix(2000))")
        #expect(try HTTPBlackBoxTests.request("GET", "http://127.0.0.1:\(port)/healthz").status == 200)
    }
}
