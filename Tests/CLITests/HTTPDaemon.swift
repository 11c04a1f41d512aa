import Foundation
import Testing
import CAMFATestSupport

/// A `camfa run` with its HTTP listener on a free loopback port and one API key, as the HTTP
/// black-box tests start it: requests go through curl (an independent client) and are
/// recorded under their path template for the check against schemas/openapi.yaml.
final class HTTPDaemon {
    let daemon: BlackBox.Daemon
    let port: Int
    let key: String
    let recorder = HTTPBlackBoxTests.Recorder()
    var base: String { "http://127.0.0.1:\(port)" }
    var log: String { daemon.log }

    /// - Parameters:
    ///   - http: more keys of the `http` section, each line indented by two spaces.
    ///   - config: more top-level sections (`factors:`, `tokens:` …).
    init(broker: BlackBox.Broker, name: String, group: String? = nil, key: String, scopes: [String], http: String = "", config: String = "",
         policies: String? = nil, kafkaProperties: [String: String] = ["fetch.wait.max.ms": "10"], owners: String? = nil,
         port: Int = HTTPBlackBoxTests.freePort()) throws {
        self.port = port
        self.key = key
        let extra = """
        http:
          address: 127.0.0.1:\(port)
        \(http)
          apiKeys:
            - name: \(name.replacingOccurrences(of: ".", with: "-"))
              hash: "sha256:\(try HTTPBlackBoxTests.sha256(key))"
              scopes: [\(scopes.joined(separator: ", "))]
        \(config)
        """
        daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: name, group: group ?? "\(name)-\(UUID().uuidString)",
                                     kafkaProperties: kafkaProperties, extraConfig: extra, policies: policies, owners: owners)
    }

    /// One exchange with the daemon's key (`authenticated: false`: none), recorded under
    /// `template` when one is given.
    func call(_ method: String, _ path: String, template: String? = nil, body: String? = nil, authenticated: Bool = true,
              headers: [String: String] = [:]) throws -> HTTPBlackBoxTests.Response {
        let r = try HTTPBlackBoxTests.request(method, base + path, key: authenticated ? key : nil, body: body.map { Data($0.utf8) }, headers: headers)
        if let template { recorder.record(method: method, template: template, r) }
        return r
    }

    /// Until the user status answers 200: the listener is up and the first assignment done.
    func waitUntilReady(timeout: Double = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let s = try? call("GET", "/v1/users/nobody/mfa-status"), s.status == 200 { return }
            Thread.sleep(forTimeInterval: 0.25)
        }
        try #require(Bool(false), "the status never answered 200; log:\n\(log.suffix(2000))")
    }

    /// A challenge for `user` from API mode: an extranet login of app crm.
    func apiChallenge(_ user: String, extra: String = "") throws -> String {
        let event = #"{"appId":"crm","requestDate":\#(HTTPBlackBoxTests.nowMs),"ip":"198.51.100.4","originalIdentity":"\#(user)","#
            + #""behaviorType":"login","behaviorResult":"success"\#(extra)}"#
        let e = try call("POST", "/v1/evaluate", template: "/v1/evaluate", body: event)
        let id = (e.json["decisions"] as? [[String: Any]] ?? []).compactMap { $0["mfaEventId"] as? String }.first
        return try #require(id, "no challenge for \(user): \(e.text)")
    }

    @discardableResult
    func stop() -> Int32 { daemon.stop() }

    /// A policy directory: the example extranet policy and `flows` (YAML) that use it.
    static func extranetPolicies(flows: String) throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory("camfa-extranet-policies")
        try FileManager.default.copyItem(atPath: packageRoot.appendingPathComponent("policies/examples/extranet.yaml").path,
                                         toPath: dir.path + "/extranet.yaml")
        try flows.write(toFile: dir.path + "/flows.yaml", atomically: true, encoding: .utf8)
        return dir
    }
}

extension HTTPBlackBoxTests.Response {
    var text: String { String(decoding: body, as: UTF8.self) }
    /// The `error.code` of an error body.
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
}
