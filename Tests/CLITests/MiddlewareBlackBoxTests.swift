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

extension ClientBlackBoxTests {
    /// Issue 26 item 2 and its acceptance: a Hummingbird app gated by `CAMFAMiddleware`, with
    /// the real daemon and broker, blocks a user after an extranet login, lets them through
    /// after a verified result, and with the daemon frozen lets the fail-open user through
    /// (`camfa-failed-open`) and keeps the fail-closed one blocked, within the timeout.
    @Suite struct ClientMiddlewareBlackBoxTests {
        static let statusKey = "camfa-test-mw-status-0123456789abcdef"
        static let resultsKey = "camfa-test-mw-results-0123456789abcdef"

        struct Reply {
            var status: Int
            var json: [String: Any]
            var failedOpen: Bool
        }

        static func get(_ url: String, user: String?) async throws -> Reply {
            var request = URLRequest(url: URL(string: url)!)
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
            let daemon = try ClientBlackBoxTests.daemon(broker, name: "middleware", port: port,
                                                        keys: [(Self.statusKey, "status"), (Self.resultsKey, "results")])
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
            var open = try await Self.get(base + "/account", user: "u-open")
            var closed = try await Self.get(base + "/account", user: "u-closed")
            let deadline = Date().addingTimeInterval(60)
            while open.status != 401 || closed.status != 401, Date() < deadline {
                try await Task.sleep(nanoseconds: 250_000_000)
                open = try await Self.get(base + "/account", user: "u-open")
                closed = try await Self.get(base + "/account", user: "u-closed")
            }
            #expect(open.status == 401 && open.json["status"] as? Bool == false, "\(open.json)\n\(daemon.log.suffix(2000))")
            let trigger = open.json["mfaTriggerData"] as? [String: Any] ?? [:]
            let challenge = try #require(trigger["mfaEventId"] as? String, "\(open.json)")
            #expect(trigger["originalIdentity"] as? String == "u-open" && trigger["flow"] as? String == "login_risk")
            #expect(trigger["methods"] as? [String] == ["otp", "sms"])
            #expect(try await Self.get(base + "/account", user: nil).status == 200, "a request without a user is not checked")

            // The user passes the MFA; the MFA service reports it.
            var result = URLRequest(url: URL(string: camfa + "/v1/mfa-results")!)
            result.httpMethod = "POST"
            result.setValue("Bearer \(Self.resultsKey)", forHTTPHeaderField: "Authorization")
            result.httpBody = Data(#"{"mfaEventId":"\#(challenge)","user":"u-open","method":"otp","result":"verified"}"#.utf8)
            let (_, posted) = try await URLSession(configuration: .ephemeral).data(for: result)
            #expect((posted as! HTTPURLResponse).statusCode == 200)
            // Repeated: each call must get camfa's answer (a 0.5 s timeout is not a flaky one).
            for _ in 0..<5 { #expect(await client.checkUserStatus("u-open", timeout: 0.5).source == .camfa) }
            let through = try await Self.get(base + "/account", user: "u-open")
            #expect(through.status == 200 && !through.failedOpen)

            // camfa frozen: the open flow's user goes through, marked; the closed one stays out.
            kill(daemon.process.processIdentifier, SIGSTOP)
            let started = Date()
            let frozenOpen = try await Self.get(base + "/account", user: "u-open")
            let frozenClosed = try await Self.get(base + "/account", user: "u-closed")
            let seconds = Date().timeIntervalSince(started)
            kill(daemon.process.processIdentifier, SIGCONT)
            #expect(frozenOpen.status == 200 && frozenOpen.failedOpen)
            #expect(frozenClosed.status == 401 && ((frozenClosed.json["mfaTriggerData"] as? [String: Any])?["reason"] as? String)?.contains("fail-closed") == true,
                    "\(frozenClosed.json)")
            #expect(seconds < 3, "\(seconds) s for two requests with a 0.5 s timeout")
        }
    }

    /// Issue 26 item 4's examples, run as a user would: the example login service captures
    /// logins to Kafka and gates its routes; the example subscriber prints what it would do
    /// for each MFA event of its filter.
    @Suite struct ClientExamplesBlackBoxTests {
        typealias M = ClientMiddlewareBlackBoxTests

        final class Example {
            let process = Process()
            let out: URL
            init(_ name: String, arguments: [String] = [], environment: [String: String]) throws {
                out = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-\(name)-\(UUID().uuidString).log")
                FileManager.default.createFile(atPath: out.path, contents: nil)
                process.executableURL = try camfaBinary().deletingLastPathComponent().appendingPathComponent(name)
                process.arguments = arguments
                process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
                process.standardOutput = try FileHandle(forWritingTo: out)
                process.standardError = process.standardOutput
                try process.run()
            }
            var output: String { (try? String(contentsOf: out, encoding: .utf8)) ?? "" }
            /// SIGTERM, then SIGKILL after 15 s: a stuck example must not hang the suite.
            func stop() {
                if process.isRunning { process.terminate() }
                let deadline = Date().addingTimeInterval(15)
                while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
                if process.isRunning {
                    Issue.record("\(process.executableURL?.lastPathComponent ?? "?") ignored SIGTERM")
                    kill(process.processIdentifier, SIGKILL)
                }
                process.waitUntilExit()
            }
        }

        @Test func theExampleLoginServiceAndSubscriberWorkWithTheRealDaemon() async throws {
            guard BlackBox.requireKcat() else { return }
            let broker = try BlackBox.broker()
            let port = HTTPBlackBoxTests.freePort(), appPort = HTTPBlackBoxTests.freePort()
            let daemon = try ClientBlackBoxTests.daemon(broker, name: "example", port: port,
                                                        keys: [(M.statusKey, "status"), (M.resultsKey, "results")])
            defer { _ = daemon.stop() }
            let login = try Example("camfa-example-login", environment: [
                "CAMFA_BOOTSTRAP": broker.bootstrap, "CAMFA_URL": "http://127.0.0.1:\(port)", "CAMFA_STATUS_KEY": M.statusKey,
                "CAMFA_INPUT_TOPIC": "in.example", "CAMFA_CACHE_SECONDS": "0", "PORT": "\(appPort)",
            ])
            defer { login.stop() }
            let subscriber = try Example("camfa-example-subscriber", arguments: ["originalIdentity=ex-open"], environment: [
                "CAMFA_BOOTSTRAP": broker.bootstrap, "CAMFA_OUTPUT_TOPIC": "out.example", "CAMFA_GROUP": "sub-\(UUID().uuidString)",
            ])
            defer { subscriber.stop() }
            let base = "http://127.0.0.1:\(appPort)"
            func post(_ path: String, _ body: String, to url: String = base, key: String? = nil) async throws -> Int {
                var r = URLRequest(url: URL(string: url + path)!)
                r.httpMethod = "POST"
                r.httpBody = Data(body.utf8)
                r.setValue("application/json", forHTTPHeaderField: "Content-Type")
                if let key { r.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
                let (_, response) = try await URLSession(configuration: .ephemeral).data(for: r)
                return (response as! HTTPURLResponse).statusCode
            }
            // The service comes up; logins from outside the intranet.
            var up = false
            for _ in 0..<80 where !up {
                up = (try? await post("/login", #"{"user":"ex-open","app":"portal","ip":"203.0.113.9"}"#)) == 200
                if !up { try await Task.sleep(nanoseconds: 250_000_000) }
            }
            try #require(up, "the example login service did not come up: \(login.output)")
            #expect(try await post("/login", #"{"user":"ex-closed","app":"finance-app","ip":"203.0.113.10"}"#) == 200)

            var open = try await M.get(base + "/account", user: "ex-open")
            var closed = try await M.get(base + "/account", user: "ex-closed")
            let deadline = Date().addingTimeInterval(60)
            while open.status != 401 || closed.status != 401, Date() < deadline {
                try await Task.sleep(nanoseconds: 250_000_000)
                open = try await M.get(base + "/account", user: "ex-open")
                closed = try await M.get(base + "/account", user: "ex-closed")
            }
            #expect(open.status == 401 && closed.status == 401, "\(open.json) \(closed.json)\n\(login.output)")
            let challenge = try #require((open.json["mfaTriggerData"] as? [String: Any])?["mfaEventId"] as? String)
            #expect(try await post("/v1/mfa-results", #"{"mfaEventId":"\#(challenge)","user":"ex-open","method":"otp","result":"verified"}"#,
                                   to: "http://127.0.0.1:\(port)", key: M.resultsKey) == 200)
            #expect(try await M.get(base + "/account", user: "ex-open").status == 200)

            kill(daemon.process.processIdentifier, SIGSTOP)
            let frozenOpen = try await M.get(base + "/account", user: "ex-open")
            let frozenClosed = try await M.get(base + "/account", user: "ex-closed")
            kill(daemon.process.processIdentifier, SIGCONT)
            #expect(frozenOpen.status == 200 && frozenOpen.failedOpen)
            #expect(frozenClosed.status == 401)

            // The subscriber saw exactly its user's challenge and its clearing.
            let said = Date().addingTimeInterval(30)
            while !subscriber.output.contains("release ex-open"), Date() < said { try await Task.sleep(nanoseconds: 250_000_000) }
            let lines = subscriber.output.split(separator: "\n").filter { $0.hasPrefix("hold") || $0.hasPrefix("release") || $0.hasPrefix("end") }
            subscriber.stop()
            #expect(subscriber.process.terminationStatus == 0, "the subscriber did not stop cleanly on SIGTERM")
            // The clearing names the challenge the hold line named.
            let held = lines.first.flatMap { $0.split(separator: "challenge ").last?.dropLast() }.map(String.init) ?? "?"
            #expect(lines.count == 2 && lines[0].hasPrefix("hold the session of ex-open until MFA (login_risk")
                    && lines[1] == "release ex-open (challenge \(held) cleared)", "\(subscriber.output)")
        }
    }
}
