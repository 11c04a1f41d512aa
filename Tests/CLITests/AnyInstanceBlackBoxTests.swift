import Foundation
import Testing
import CAMFATestSupport

/// Issue 24 item 4: the status, API mode and the factor endpoints answer on whichever
/// instance receives them. Two real daemons share an 8-partition input topic and an owners
/// topic; each request goes to one instance, and for the users the other instance
/// processes it is forwarded there (README "Any instance answers"). A forged owners record
/// pointing every partition at a listener of the attacker's must not divert a request
/// (it would carry the caller's API key).
@Suite(.serialized) struct AnyInstanceBlackBoxTests {
    static let key = "camfa-test-anyinstance-0123456789abcdef"

    @Test func statusEvaluateAndEnrolmentAnswerOnEitherInstanceAndForgedOwnersAreIgnored() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let policies = try MFALoopBlackBoxTests.policies()
        let group = "anyinst-\(UUID().uuidString)"
        let servers = try [HTTPBlackBoxTests.freePort(), HTTPBlackBoxTests.freePort()].map { port in
            try HTTPDaemon(broker: broker, name: "anyinst", group: group, key: Self.key, scopes: ["evaluate", "status", "enroll"],
                           http: "  advertisedURL: http://127.0.0.1:\(port)\n  openEndpoints: [/healthz, /metrics]",
                           policies: policies.path, kafkaProperties: BlackBox.Daemon.steadyGroup.merging(["fetch.wait.max.ms": "10"]) { $1 },
                           owners: "owners.anyinst", port: port)
        }
        defer { for s in servers { s.stop() } }
        let bases = servers.map(\.base)
        func call(_ instance: Int, _ method: String, _ path: String, template: String, body: String? = nil) throws -> HTTPBlackBoxTests.Response {
            try servers[instance].call(method, path, template: template, body: body)
        }
        func metric(_ instance: Int, _ name: String) -> Double {
            guard let r = try? HTTPBlackBoxTests.request("GET", bases[instance] + "/metrics"), r.status == 200 else { return 0 }
            return String(decoding: r.body, as: UTF8.self).split(separator: "\n")
                .filter { $0.hasPrefix(name) }.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
        }
        let users = (0..<16).map { "any-user-\($0)" }
        // Settled: both instances hold partitions, have announced them, and every user's
        // status answers 200 on both, twice in a row.
        func everyStatusAnswers() -> Bool {
            for i in 0..<2 {
                for u in users {
                    guard let r = try? HTTPBlackBoxTests.request("GET", bases[i] + "/v1/users/\(u)/mfa-status", key: Self.key), r.status == 200 else { return false }
                }
            }
            return true
        }
        var settled = 0
        let deadline = Date().addingTimeInterval(120)
        while settled < 2 && Date() < deadline {
            if everyStatusAnswers() { settled += 1 } else { settled = 0 }
            Thread.sleep(forTimeInterval: 1)
        }
        try #require(settled == 2, "statuses never answered 200 on both instances; logs:\n\(servers[0].log.suffix(1500))\n---\n\(servers[1].log.suffix(1500))")
        #expect(metric(0, "camfa_requests_forwarded_total{outcome=\"answered\"}") > 0 && metric(1, "camfa_requests_forwarded_total{outcome=\"answered\"}") > 0,
                "both instances forwarded: each processes some of the users")

        // The attack: owner records without the daemon secret's MAC (none, and a wrong one)
        // naming a listener of the attacker's, with an epoch past every real one.
        let attacker = try AttackerListener()
        defer { attacker.stop() }
        var forged: [BlackBox.RawRecord] = []
        for p in 0..<8 {
            let value = #"{"partition":\#(p),"url":"http://127.0.0.1:\#(attacker.port)","epoch":9000000000000000000,"at":0}"#
            forged.append(BlackBox.RawRecord(key: "\(p)", value: value, headers: ["camfa.kind": "owner"]))
            forged.append(BlackBox.RawRecord(key: "\(p)", value: value, headers: ["camfa.kind": "owner", "camfa.mac": String(repeating: "ab", count: 32)]))
        }
        try BlackBox.produceRaw(broker.bootstrap, topic: "owners.anyinst", forged)
        let refusedBy = Date().addingTimeInterval(20)
        while Date() < refusedBy && (metric(0, "camfa_owner_records_refused_total") < 16 || metric(1, "camfa_owner_records_refused_total") < 16) {
            Thread.sleep(forTimeInterval: 0.25)
        }
        #expect(metric(0, "camfa_owner_records_refused_total") >= 16 && metric(1, "camfa_owner_records_refused_total") >= 16,
                "both instances read and refused the forged records")

        // API mode on either instance: one record per event in the input topic, whichever
        // instance processes the user; and the challenge shows in the status on the other.
        var challenges: [String: String] = [:]
        for (n, u) in users.enumerated() {
            let event = #"{"appId":"crm","requestDate":\#(HTTPBlackBoxTests.nowMs),"ip":"198.51.100.4","originalIdentity":"\#(u)","behaviorType":"login","behaviorResult":"success"}"#
            let e = try call(n % 2, "POST", "/v1/evaluate", template: "/v1/evaluate", body: event)
            #expect(e.status == 200 && e.json["mfaRequired"] as? Bool == true, "\(u): \(e.status) \(e.text)")
            challenges[u] = (e.json["decisions"] as? [[String: Any]] ?? []).compactMap { $0["mfaEventId"] as? String }.first
        }
        for (n, u) in users.enumerated() {
            let s = try call(1 - n % 2, "GET", "/v1/users/\(u)/mfa-status", template: "/v1/users/{id}/mfa-status")
            let pending = (s.json["pending"] as? [[String: Any]] ?? []).compactMap { $0["mfaEventId"] as? String }
            #expect(s.status == 200 && s.json["mfaVerified"] as? Bool == false && challenges[u] != nil && pending == [challenges[u]!],
                    "\(u): \(s.status) \(s.text)")
            let f = try call(1 - n % 2, "POST", "/v1/users/\(u)/factors/totp", template: "/v1/users/{id}/factors/totp")
            #expect(f.status == 200 && (f.json["secret"] as? String)?.isEmpty == false, "\(u): \(f.status) \(f.text)")
        }
        // Each event and enrolment was written once, by the instance that processes the user.
        let records = try BlackBox.consume(broker.bootstrap, topic: "in.anyinst", atLeast: 2 * users.count, timeout: 30)
        #expect(records.count == 2 * users.count, "\(records.count) input records for \(users.count) events and \(users.count) enrolments")
        #expect(attacker.requests.isEmpty, "a request went to the forged owner: \(attacker.requests)")
        #expect(!servers.contains { $0.log.contains(Self.key) }, "the API key is not logged")
        for s in servers { try s.recorder.validateAgainstOpenAPI() }
    }
}

/// A plain HTTP listener on loopback that records every request line it gets.
final class AttackerListener {
    let port = HTTPBlackBoxTests.freePort()
    private let process = Process()
    private let log: URL

    init() throws {
        log = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-attacker-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let script = """
        import http.server, sys
        class H(http.server.BaseHTTPRequestHandler):
            def handle_one_request(self):
                line = self.rfile.readline(65537)
                if line:
                    open(sys.argv[2], 'a').write(line.decode('latin-1'))
                    self.wfile.write(b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{}')
                self.close_connection = True
        http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
        """
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, String(port), log.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    var requests: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: log)
    }
}
