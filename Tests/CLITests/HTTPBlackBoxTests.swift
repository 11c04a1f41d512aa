import Foundation
import Testing
import CAMFATestSupport

/// Issue 6's acceptance over HTTP: the real `camfa run` with its HTTP listener, curl as the
/// client, kcat as the Kafka side. API mode, user status and MFA results share the partition
/// state of the event flow; every response is checked against schemas/openapi.yaml.
@Suite(.serialized) struct HTTPBlackBoxTests {
    static let fullKey = "camfa-test-full-0123456789abcdef"
    static let statusKey = "camfa-test-status-0123456789abcdef"

    struct Response {
        var status: Int
        var contentType: String
        var body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
    }

    /// Every response the tests saw, with its path template, for the OpenAPI check.
    final class Recorder: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: [String] = []
        func record(method: String, template: String, _ r: Response) {
            // No HTTP exchange happened (the listener was not up yet): nothing to validate.
            guard r.status != 0 else { return }
            let entry: [String: Any] = ["method": method, "path": template, "status": r.status, "contentType": r.contentType,
                                        "body": String(decoding: r.body, as: UTF8.self)]
            let data = try! JSONSerialization.data(withJSONObject: entry)
            lock.withLock { lines.append(String(decoding: data, as: UTF8.self)) }
        }
        var text: String { lock.withLock { lines.joined(separator: "\n") + "\n" } }

        /// Every recorded response against the OpenAPI description.
        func validateAgainstOpenAPI() throws {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-http-responses-\(UUID().uuidString).jsonl")
            defer { try? FileManager.default.removeItem(at: file) }
            try text.write(to: file, atomically: true, encoding: .utf8)
            let v = Process()
            v.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            v.arguments = ["python3", packageRoot.appendingPathComponent("scripts/validate-responses.py").path,
                           packageRoot.appendingPathComponent("schemas/openapi.yaml").path, file.path]
            let vout = Pipe()
            v.standardOutput = vout
            v.standardError = vout
            try v.run()
            let report = String(decoding: vout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            v.waitUntilExit()
            #expect(v.terminationStatus == 0, "OpenAPI validation:\n\(report)")
        }
    }

    static func sha256(_ key: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        let input = Pipe(), out = Pipe()
        p.standardInput = input
        p.standardOutput = out
        try p.run()
        input.fileHandleForWriting.write(Data(key.utf8))
        try input.fileHandleForWriting.close()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return String(text.prefix(64))
    }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// One HTTP exchange with curl (an independent client).
    static func request(_ method: String, _ url: String, key: String? = nil, body: Data? = nil, headers: [String: String] = [:]) throws -> Response {
        let dir = FileManager.default.temporaryDirectory
        let bodyFile = dir.appendingPathComponent("camfa-http-\(UUID().uuidString)")
        let outFile = dir.appendingPathComponent("camfa-http-\(UUID().uuidString)")
        defer {
            try? FileManager.default.removeItem(at: bodyFile)
            try? FileManager.default.removeItem(at: outFile)
        }
        var args = ["-s", "-X", method, "-o", outFile.path, "-w", "%{http_code} %{content_type}", "--max-time", "20", url]
        if let key { args += ["-H", "Authorization: Bearer \(key)"] }
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { args += ["-H", "\(name): \(value)"] }
        if let body {
            try body.write(to: bodyFile)
            args += ["-H", "Content-Type: application/json", "--data-binary", "@\(bodyFile.path)"]
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let meta = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let parts = meta.split(separator: " ", maxSplits: 1).map(String.init)
        return Response(status: Int(parts.first ?? "") ?? 0, contentType: parts.count > 1 ? parts[1] : "",
                        body: (try? Data(contentsOf: outFile)) ?? Data())
    }

    static func event(user: String, app: String, ip: String, time: Int64, result: String = "success") -> Data {
        Data("""
        {"appId":"\(app)","requestDate":\(time),"ip":"\(ip)","originalIdentity":"\(user)","behaviorType":"login","behaviorResult":"\(result)"}
        """.utf8)
    }

    static var nowMs: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    @Test func apiModeStatusAndResultsShareTheEventFlowsState() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let port = Self.freePort()
        let config = """
        http:
          address: 127.0.0.1:\(port)
          apiKeys:
            - name: full
              hash: "sha256:\(try Self.sha256(Self.fullKey))"
              scopes: [evaluate, status, results, admin]
            - name: status-only
              hash: "sha256:\(try Self.sha256(Self.statusKey))"
              scopes: [status]
        """
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "http", group: "http-\(UUID().uuidString)",
                                         // The mock broker holds an empty fetch for its whole wait, even once
                                         // data arrived; API mode waits for its own record to come back.
                                         kafkaProperties: ["fetch.wait.max.ms": "10"],
                                         extraConfig: config)
        defer { _ = daemon.stop() }
        let base = "http://127.0.0.1:\(port)"
        let rec = Recorder()
        func call(_ method: String, _ path: String, template: String? = nil, key: String? = Self.fullKey, body: Data? = nil) throws -> Response {
            let r = try Self.request(method, base + path, key: key, body: body)
            rec.record(method: method, template: template ?? path, r)
            return r
        }

        // Ready once the partition is assigned and restored.
        var ready = false
        for _ in 0..<120 where !ready {
            if let r = try? call("GET", "/readyz"), r.status == 200 { ready = true } else { Thread.sleep(forTimeInterval: 0.25) }
        }
        try #require(ready, "readyz never answered 200; log:\n\(daemon.log.suffix(2000))")
        #expect(try call("GET", "/healthz", key: nil).status == 200)

        // Access control: no key → 401, a key without the scope → 403, on every keyed endpoint.
        let keyed: [(String, String, String, Data?)] = [
            ("POST", "/v1/evaluate", "/v1/evaluate", Self.event(user: "acl", app: "portal", ip: "10.20.1.1", time: Self.nowMs)),
            ("GET", "/v1/users/acl/mfa-status", "/v1/users/{id}/mfa-status", nil),
            ("POST", "/v1/mfa-results", "/v1/mfa-results", Data("{}".utf8)),
            ("POST", "/v1/admin/reload", "/v1/admin/reload", nil),
            ("GET", "/metrics", "/metrics", nil),
            ("GET", "/readyz", "/readyz", nil),
            ("POST", "/v1/tokens/verify", "/v1/tokens/verify", Data(#"{"mfaToken":"x"}"#.utf8)),
        ]
        for (method, path, template, body) in keyed {
            #expect(try call(method, path, template: template, key: nil, body: body).status == 401, "\(method) \(path) without a key")
            #expect(try call(method, path, template: template, key: "wrong-key", body: body).status == 401, "\(method) \(path) with an unknown key")
            if template != "/v1/users/{id}/mfa-status" && template != "/v1/tokens/verify" {
                #expect(try call(method, path, template: template, key: Self.statusKey, body: body).status == 403, "\(method) \(path) with a status-only key")
            }
        }

        // An ordinary intranet login: allowed.
        let t0 = Self.nowMs
        let allow = try call("POST", "/v1/evaluate", body: Self.event(user: "alice", app: "portal", ip: "10.20.7.7", time: t0))
        #expect(allow.status == 200)
        #expect(allow.json["mfaRequired"] as? Bool == false)

        // Kafka → HTTP: four apps from one IP over Kafka, the fifth through API mode is the burst.
        let burstIP = "10.20.9.9"
        try BlackBox.produce(broker.bootstrap, topic: "in.http", ["portal", "mail", "crm", "wiki"].enumerated().map { i, app in
            (key: "k\(i)", value: Self.event(user: "k\(i)", app: app, ip: burstIP, time: t0 + Int64(i)))
        })
        let burst = try call("POST", "/v1/evaluate", body: Self.event(user: "bob", app: "hr", ip: burstIP, time: t0 + 10))
        #expect(burst.status == 200)
        #expect(burst.json["mfaRequired"] as? Bool == true, "body: \(String(decoding: burst.body, as: UTF8.self))")
        let decisions = burst.json["decisions"] as? [[String: Any]] ?? []
        let mfa = try #require(decisions.first { $0["action"] as? String == "mfa" })
        #expect(mfa["flow"] as? String == "api_login")
        #expect(mfa["methods"] as? [String] == ["otp", "sms"])
        let challenge = try #require(mfa["mfaEventId"] as? String)

        // The user is locked with that challenge pending; the status key may read it.
        let locked = try call("GET", "/v1/users/bob/mfa-status", template: "/v1/users/{id}/mfa-status", key: Self.statusKey)
        #expect(locked.status == 200)
        #expect(locked.json["mfaVerified"] as? Bool == false)
        #expect((locked.json["pending"] as? [[String: Any]])?.first?["mfaEventId"] as? String == challenge)

        // A result for an unknown id is refused; the real one clears the challenge.
        let unknown = try call("POST", "/v1/mfa-results", body: Data("""
        {"mfaEventId":"00000000-0000-8000-8000-000000000000","user":"bob","method":"otp","result":"verified"}
        """.utf8))
        #expect(unknown.status == 404)
        let verified = try call("POST", "/v1/mfa-results", body: Data("""
        {"mfaEventId":"\(challenge)","user":"bob","method":"otp","result":"verified"}
        """.utf8))
        #expect(verified.status == 200)
        #expect(verified.json["cleared"] as? Bool == true)
        let free = try call("GET", "/v1/users/bob/mfa-status", template: "/v1/users/{id}/mfa-status")
        #expect(free.json["mfaVerified"] as? Bool == true)
        #expect((free.json["pending"] as? [Any])?.isEmpty ?? true)

        // HTTP → Kafka: four apps through API mode, the fifth over Kafka gets an MFA event.
        let reverseIP = "10.20.8.8"
        for (i, app) in ["portal", "mail", "crm", "wiki"].enumerated() {
            let r = try call("POST", "/v1/evaluate", body: Self.event(user: "h\(i)", app: app, ip: reverseIP, time: t0 + 20 + Int64(i)))
            #expect(r.status == 200)
        }
        try BlackBox.produce(broker.bootstrap, topic: "in.http", [(key: "carol", value: Self.event(user: "carol", app: "hr", ip: reverseIP, time: t0 + 30))])
        let out = try BlackBox.consume(broker.bootstrap, topic: "out.http", atLeast: 2, timeout: 30)
        let published = try DaemonBlackBoxTests.published(out)
        #expect(published.contains { $0.subject == "carol" && $0.flow == "login_risk" && $0.methods == ["otp", "sms"] },
                "published: \(published.map { "\($0.subject)/\($0.flow)" })")

        // Bad bodies: the field is named; a 10 MB body is refused whole.
        let badType = try call("POST", "/v1/evaluate", body: Data(#"{"originalIdentity":"x","requestDate":"yesterday"}"#.utf8))
        #expect(badType.status == 400)
        #expect(((badType.json["error"] as? [String: Any])?["field"] as? String) == "requestDate")
        let notJSON = try call("POST", "/v1/evaluate", body: Data("{not json".utf8))
        #expect(notJSON.status == 400)
        let badResult = try call("POST", "/v1/mfa-results", body: Data(#"{"mfaEventId":"x","user":"bob","method":"otp","result":"maybe"}"#.utf8))
        #expect(badResult.status == 400)
        #expect(((badResult.json["error"] as? [String: Any])?["field"] as? String) == "result")
        let huge = try call("POST", "/v1/evaluate", body: Data(repeating: 0x20, count: 10 << 20))
        #expect(huge.status == 413)

        // mfaTokens: with no keys configured, the daemon made one in its state directory
        // and publishes it, without a key; a token it did not sign is not valid.
        let jwks = try call("GET", "/.well-known/jwks.json", key: nil)
        #expect(jwks.status == 200)
        let keys = (jwks.json["keys"] as? [[String: Any]]) ?? []
        #expect(keys.count == 1 && keys.first?["alg"] as? String == "ES256" && (keys.first?["kid"] as? String)?.count == 43, "\(jwks.json)")
        let forged = #"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJib2IifQ."#
        let refused = try call("POST", "/v1/tokens/verify", key: Self.statusKey, body: Data(#"{"mfaToken":"\#(forged)"}"#.utf8))
        #expect(refused.status == 200 && refused.json["valid"] as? Bool == false)

        let metrics = try call("GET", "/metrics")
        #expect(metrics.status == 200)
        #expect(String(decoding: metrics.body, as: UTF8.self).contains("camfa_events_processed_total"))

        // Every response above against the OpenAPI description.
        try rec.validateAgainstOpenAPI()
    }
}
