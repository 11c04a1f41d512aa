import CAMFAClient
import CAMFAMiddleware
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HTTPTypes
import Hummingbird
import CAMFATestSupport
import Testing

/// Issue 26 item 2 and its acceptance: a Hummingbird app gated by `CAMFAMiddleware`, with
/// the real daemon and broker, blocks a user after an extranet login, lets them through
/// after a verified result, and with the daemon frozen lets the fail-open user through
/// (`camfa-failed-open`) and keeps the fail-closed one blocked, within the timeout.
@Suite(.serialized) struct MiddlewareBlackBoxTests {
    static let statusKey = "camfa-test-mw-status-0123456789abcdef"
    static let resultsKey = "camfa-test-mw-results-0123456789abcdef"

    struct Reply {
        var status: Int
        var json: [String: Any]
        var failedOpen: Bool
    }

    static func get(_ base: String, user: String?) async throws -> Reply {
        var request = URLRequest(url: URL(string: base + "/account")!)
        if let user { request.setValue(user, forHTTPHeaderField: "X-User") }
        let (data, response) = try await URLSession(configuration: .ephemeral).data(for: request)
        let http = response as! HTTPURLResponse
        return Reply(status: http.statusCode, json: (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:],
                     failedOpen: http.value(forHTTPHeaderField: "camfa-failed-open") == "true")
    }

    @Test func theAppBlocksUntilVerifiedAndAppliesTheFailModeWhenTheDaemonIsFrozen() async throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let port = HTTPBlackBoxTests.freePort()
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "middleware", group: "middleware-\(UUID().uuidString)",
                                         kafkaProperties: ["fetch.wait.max.ms": "10"], extraConfig: """
            http:
              address: 127.0.0.1:\(port)
              apiKeys:
                - {name: app, hash: "sha256:\(try HTTPBlackBoxTests.sha256(Self.statusKey))", scopes: [status]}
                - {name: mfa, hash: "sha256:\(try HTTPBlackBoxTests.sha256(Self.resultsKey))", scopes: [results]}
            """)
        defer { _ = daemon.stop() }
        let camfa = "http://127.0.0.1:\(port)"

        // The business app: one protected route, the user from a header (its session).
        let client = StatusClient(baseURL: URL(string: camfa)!, apiKey: Self.statusKey, cacheTTL: 0)
        let router = Router()
        let userHeader = HTTPField.Name("X-User")!
        router.add(middleware: CAMFAMiddleware(client: client, timeout: 0.5) { request, _ in request.headers[userHeader] })
        router.get("/account") { _, _ in "your account" }
        let (ports, listening) = AsyncStream<Int>.makeStream()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in listening.yield(channel.localAddress?.port ?? 0) })
        let server = Task { try await app.runService(gracefulShutdownSignals: []) }
        defer { server.cancel() }
        var iterator = ports.makeAsyncIterator()
        let appPort = try #require(await iterator.next())
        let base = "http://127.0.0.1:\(appPort)"

        let t0 = HTTPBlackBoxTests.nowMs
        try BlackBox.produce(broker.bootstrap, topic: "in.middleware", [
            (key: "u-open", value: HTTPBlackBoxTests.event(user: "u-open", app: "portal", ip: "203.0.113.7", time: t0)),
            (key: "u-closed", value: HTTPBlackBoxTests.event(user: "u-closed", app: "finance-app", ip: "203.0.113.8", time: t0 + 1)),
        ])
        var open = try await Self.get(base, user: "u-open")
        var closed = try await Self.get(base, user: "u-closed")
        let deadline = Date().addingTimeInterval(60)
        while open.status != 401 || closed.status != 401, Date() < deadline {
            try await Task.sleep(nanoseconds: 250_000_000)
            open = try await Self.get(base, user: "u-open")
            closed = try await Self.get(base, user: "u-closed")
        }
        #expect(open.status == 401 && open.json["status"] as? Bool == false, "\(open.json)\n\(daemon.log.suffix(2000))")
        let trigger = open.json["mfaTriggerData"] as? [String: Any] ?? [:]
        let challenge = try #require(trigger["mfaEventId"] as? String, "\(open.json)")
        #expect(trigger["originalIdentity"] as? String == "u-open" && trigger["flow"] as? String == "login_risk")
        #expect(trigger["methods"] as? [String] == ["otp", "sms"])
        #expect(try await Self.get(base, user: nil).status == 200, "a request without a user is not checked")

        // The user passes the MFA; the MFA service reports it.
        var result = URLRequest(url: URL(string: camfa + "/v1/mfa-results")!)
        result.httpMethod = "POST"
        result.setValue("Bearer \(Self.resultsKey)", forHTTPHeaderField: "Authorization")
        result.httpBody = Data(#"{"mfaEventId":"\#(challenge)","user":"u-open","method":"otp","result":"verified"}"#.utf8)
        let (_, posted) = try await URLSession(configuration: .ephemeral).data(for: result)
        #expect((posted as! HTTPURLResponse).statusCode == 200)
        // Repeated: each call must get camfa's answer (a 0.5 s timeout is not a flaky one).
        for _ in 0..<5 { #expect(await client.checkUserStatus("u-open", timeout: 0.5).source == .camfa) }
        let through = try await Self.get(base, user: "u-open")
        #expect(through.status == 200 && !through.failedOpen)

        // camfa frozen: the open flow's user goes through, marked; the closed one stays out.
        kill(daemon.process.processIdentifier, SIGSTOP)
        let started = Date()
        let frozenOpen = try await Self.get(base, user: "u-open")
        let frozenClosed = try await Self.get(base, user: "u-closed")
        let seconds = Date().timeIntervalSince(started)
        kill(daemon.process.processIdentifier, SIGCONT)
        #expect(frozenOpen.status == 200 && frozenOpen.failedOpen)
        #expect(frozenClosed.status == 401 && ((frozenClosed.json["mfaTriggerData"] as? [String: Any])?["reason"] as? String)?.contains("fail-closed") == true,
                "\(frozenClosed.json)")
        #expect(seconds < 3, "\(seconds) s for two requests with a 0.5 s timeout")
    }
}
