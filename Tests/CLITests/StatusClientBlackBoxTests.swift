import CAMFAClient
import Foundation
import CAMFATestSupport
import Testing

/// The client-side suites (issue 26): they measure deadlines against a daemon frozen with
/// SIGSTOP, so they run one at a time, in a run of their own (`make test`'s third run), where
/// no other suite blocks the concurrency pool their timers and requests need.
@Suite(.serialized) struct ClientBlackBoxTests {
    /// The daemon of a client test: its HTTP API on `port` with one API key per scope given,
    /// and a short fetch wait (the mock broker holds an empty fetch for its whole wait).
    static func daemon(_ broker: BlackBox.Broker, name: String, port: Int, keys: [(key: String, scope: String)]) throws -> BlackBox.Daemon {
        let entries = try keys.map { k in "    - {name: \(k.scope), hash: \"sha256:\(try HTTPBlackBoxTests.sha256(k.key))\", scopes: [\(k.scope)]}" }
        return try BlackBox.Daemon(bootstrap: broker.bootstrap, name: name, group: "\(name)-\(UUID().uuidString)",
                                   kafkaProperties: ["fetch.wait.max.ms": "10"], extraConfig: """
            http:
              address: 127.0.0.1:\(port)
              apiKeys:
            \(entries.joined(separator: "\n"))
            """)
    }
}

extension ClientBlackBoxTests {
    /// Issue 26 item 1: `StatusClient.checkUserStatus` against the real daemon, and the fail
    /// mode it applies when the daemon is frozen (SIGSTOP) or gone (SIGKILL): the user of an
    /// open flow goes through with `failedOpen`, the user of a closed flow stays held, both
    /// within the timeout.
    @Suite struct ClientStatusBlackBoxTests {
        static let key = "camfa-test-status-client-0123456789abcdef"

        @Test func theFailModeAppliesWhenTheDaemonIsFrozenOrGone() async throws {
            guard BlackBox.requireKcat() else { return }
            let broker = try BlackBox.broker()
            let port = HTTPBlackBoxTests.freePort()
            let daemon = try ClientBlackBoxTests.daemon(broker, name: "statusclient", port: port, keys: [(Self.key, "status")])
            defer { _ = daemon.stop() }
            let client = StatusClient(baseURL: URL(string: "http://127.0.0.1:\(port)")!, apiKey: Self.key, cacheTTL: 0)
            // Extranet logins: login_risk (fail mode open) for the portal, internal_apps
            // (closed) for the finance app.
            let t0 = HTTPBlackBoxTests.nowMs
            try BlackBox.produce(broker.bootstrap, topic: "in.statusclient", [
                (key: "u/open", value: HTTPBlackBoxTests.event(user: "u/open", app: "portal", ip: "203.0.113.7", time: t0)),
                (key: "u-closed", value: HTTPBlackBoxTests.event(user: "u-closed", app: "finance-app", ip: "203.0.113.8", time: t0 + 1)),
            ])
            var open = await client.checkUserStatus("u/open", timeout: 2)
            var closed = await client.checkUserStatus("u-closed", timeout: 2)
            let deadline = Date().addingTimeInterval(60)
            while (open.pending.isEmpty || closed.pending.isEmpty), Date() < deadline {
                try await Task.sleep(nanoseconds: 250_000_000)
                open = await client.checkUserStatus("u/open", timeout: 2)
                closed = await client.checkUserStatus("u-closed", timeout: 2)
            }
            #expect(open.source == .camfa && !open.allowed && open.failMode == .open && open.pending.first?.flow == "login_risk", "\(open)\n\(daemon.log.suffix(2000))")
            #expect(closed.source == .camfa && !closed.allowed && closed.failMode == .closed && closed.pending.first?.flow == "internal_apps", "\(closed)")
            let bystander = await client.checkUserStatus("u-quiet", timeout: 2)
            #expect(bystander.source == .camfa && bystander.allowed && bystander.mfaVerified)

            // Frozen: connections are accepted, nothing answers.
            kill(daemon.process.processIdentifier, SIGSTOP)
            var started = Date()
            let frozenOpen = await client.checkUserStatus("u/open", timeout: 0.5)
            let frozenClosed = await client.checkUserStatus("u-closed", timeout: 0.5)
            let frozenNew = await client.checkUserStatus("u-never-seen", timeout: 0.5)
            let frozenSeconds = Date().timeIntervalSince(started)
            kill(daemon.process.processIdentifier, SIGCONT)
            #expect(frozenOpen.allowed && frozenOpen.failedOpen && !frozenOpen.mfaVerified, "\(frozenOpen)")
            #expect(!frozenClosed.allowed && !frozenClosed.failedOpen && frozenClosed.pending.count == 1, "\(frozenClosed)")
            #expect(frozenNew.allowed && frozenNew.failedOpen)
            if case .failMode(let reason) = frozenOpen.source { #expect(reason.contains("0.5")) } else { Issue.record("\(frozenOpen.source)") }
            // Three calls of 0.5 s each, with room for a loaded machine, far below a hang.
            #expect(frozenSeconds < 3, "\(frozenSeconds) s")

            // Back: camfa answers again; within a client's cache TTL, the second call is local.
            #expect(await client.checkUserStatus("u-closed", timeout: 2).source == .camfa)
            let cached = StatusClient(baseURL: URL(string: "http://127.0.0.1:\(port)")!, apiKey: Self.key, cacheTTL: 60)
            #expect(await cached.checkUserStatus("u-closed", timeout: 2).source == .camfa)
            #expect(await cached.checkUserStatus("u-closed", timeout: 2).source == .cache)
            // Gone: connections are refused.
            daemon.crash()
            started = Date()
            let goneOpen = await client.checkUserStatus("u/open", timeout: 0.5)
            let goneClosed = await client.checkUserStatus("u-closed", timeout: 0.5)
            #expect(goneOpen.allowed && goneOpen.failedOpen && !goneClosed.allowed, "\(goneOpen)\n\(goneClosed)")
            #expect(Date().timeIntervalSince(started) < 2)
            // A fail-mode answer is not cached: the next call asks camfa again.
            #expect(await client.checkUserStatus("u/open", timeout: 0.3).source != .cache)
        }
    }
}
