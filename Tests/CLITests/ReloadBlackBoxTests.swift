import Foundation
import Testing
import CAMFATestSupport

/// Policy hot reload on SIGHUP, black-box: a broken policy set is refused with its
/// file:line:col error and decisions keep following the old set; a valid change is taken
/// and the next events follow it.
@Suite(.serialized) struct ReloadBlackBoxTests {
    /// A login from outside the office network and the VPN: the extranet branch of
    /// `login_risk` challenges it (policies/examples/flows.yaml).
    static func extranetLogin(user: String, minute: Int) -> (key: String, value: Data) {
        let time = 1_767_225_600_000 + Int64(minute) * 60_000
        let json = #"{"appId": "portal", "requestDate": \#(time), "ip": "198.51.100.23", "city": "Beijing", "country": "CN", "#
            + #""originalIdentity": "\#(user)", "behaviorType": "login", "behaviorResult": "success"}"#
        return (user, Data(json.utf8))
    }

    /// `camfa run` with the policy directory given by `--policies` (a scratch copy).
    static func startDaemon(bootstrap: String, policies: URL, dir: URL) throws -> Process {
        let config = """
        kafka:
          bootstrap: "\(bootstrap)"
          groupId: bb-reload
          properties:
            session.timeout.ms: "6000"
            heartbeat.interval.ms: "500"
        topics:
          input: in.reload
          output: out.reload
          deadLetter: dlq.reload
        stateDir: \(dir.appendingPathComponent("state").path)
        enrichment:
          cityDatabase: null
          asnDatabase: null
          anonymousIPDatabase: null
          userAgentRules: null
        logging:
          level: info
          format: json
        http:
          enabled: false
        """
        let configURL = dir.appendingPathComponent("camfa.yaml")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        let log = dir.appendingPathComponent("stderr.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let p = Process()
        p.executableURL = try camfaBinary()
        p.arguments = ["run", "--config", configURL.path, "--policies", policies.path]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = try FileHandle(forWritingTo: log)
        try p.run()
        return p
    }

    static func logLines(_ dir: URL, _ message: String) -> [[String: Any]] {
        let text = (try? String(contentsOf: dir.appendingPathComponent("stderr.log"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["message"] as? String == message }
    }

    static func waitFor(_ what: () -> Bool, timeout: Double = 30) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if what() { return true }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return what()
    }

    @Test func brokenSetIsRefusedAndAValidChangeIsTakenOnSighup() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try SystemdBlackBoxTests.broker()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-bb-reload-\(UUID().uuidString.prefix(8))")
        let policies = dir.appendingPathComponent("policies")
        try FileManager.default.createDirectory(at: policies, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let examples = packageRoot.appendingPathComponent("policies/examples")
        for f in try FileManager.default.contentsOfDirectory(atPath: examples.path) where f.hasSuffix(".yaml") {
            try FileManager.default.copyItem(at: examples.appendingPathComponent(f), to: policies.appendingPathComponent(f))
        }
        let daemon = try Self.startDaemon(bootstrap: broker.bootstrap, policies: policies, dir: dir)
        defer {
            if daemon.isRunning { daemon.terminate() }
            daemon.waitUntilExit()
        }
        #expect(Self.waitFor { !Self.logLines(dir, "partitions assigned").isEmpty })

        func published(atLeast n: Int) throws -> [DaemonBlackBoxTests.Published] {
            try DaemonBlackBoxTests.published(BlackBox.consume(broker.bootstrap, topic: "out.reload", atLeast: n, timeout: 30, settle: 0.5))
        }

        // 1. The example set: the extranet branch asks for otp, then sms.
        try BlackBox.produce(broker.bootstrap, topic: "in.reload", [Self.extranetLogin(user: "r1", minute: 0)])
        let first = try published(atLeast: 1)
        try #require(first.count == 1, "\(first.map(\.methods))")
        #expect(first[0].flow == "login_risk")
        #expect(first[0].methods == ["otp", "sms"])

        // 2. A broken policy file: refused with file:line:col, the old set keeps deciding.
        let extranet = policies.appendingPathComponent("extranet.yaml")
        let original = try String(contentsOf: extranet, encoding: .utf8)
        try original.replacingOccurrences(of: "judgment: '!(", with: "judgment: '!!!(( ")
            .write(to: extranet, atomically: true, encoding: .utf8)
        kill(daemon.processIdentifier, SIGHUP)
        #expect(Self.waitFor { !Self.logLines(dir, "policy reload refused; the running policies stay").isEmpty })
        let refused = try #require(Self.logLines(dir, "policy reload refused; the running policies stay").first)
        let error = refused["error"] as? String ?? ""
        #expect(error.contains(#/extranet\.yaml:[0-9]+:[0-9]+: /#), "\(refused)")
        #expect(refused["level"] as? String == "error")
        #expect(daemon.isRunning, "SIGHUP must not stop the daemon")
        try BlackBox.produce(broker.bootstrap, topic: "in.reload", [Self.extranetLogin(user: "r2", minute: 1)])
        let second = try published(atLeast: 2)
        try #require(second.count == 2, "\(second.map(\.methods))")
        #expect(second[1].subject == "r2")
        #expect(second[1].methods == ["otp", "sms"], "the refused set must not be in force")

        // 3. Repaired, and the extranet branch changed to face: taken, and followed.
        try original.write(to: extranet, atomically: true, encoding: .utf8)
        let flowsURL = policies.appendingPathComponent("flows.yaml")
        let flows = try String(contentsOf: flowsURL, encoding: .utf8)
        let branch = "    mfa: [otp, sms]\n    returns:\n      reason: '\"extranet\"'"
        #expect(flows.contains(branch))
        try flows.replacingOccurrences(of: branch, with: "    mfa: [face]\n    returns:\n      reason: '\"extranet\"'")
            .write(to: flowsURL, atomically: true, encoding: .utf8)
        kill(daemon.processIdentifier, SIGHUP)
        #expect(Self.waitFor { !Self.logLines(dir, "policies reloaded").isEmpty })
        let reloaded = try #require(Self.logLines(dir, "policies reloaded").first)
        #expect(Int(reloaded["policies"] as? String ?? "") ?? 0 > 0)
        #expect(Int(reloaded["flows"] as? String ?? "") ?? 0 > 0)
        try BlackBox.produce(broker.bootstrap, topic: "in.reload", [Self.extranetLogin(user: "r3", minute: 2)])
        let third = try published(atLeast: 3)
        try #require(third.count == 3, "\(third.map(\.methods))")
        #expect(third[2].subject == "r3")
        #expect(third[2].methods == ["face"])

        daemon.terminate()
        daemon.waitUntilExit()
        #expect(daemon.terminationStatus == 0)
    }
}
