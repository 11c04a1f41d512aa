import Foundation
import Testing
import CAMFATestSupport

/// Issue 25's hosted challenge page, in a real headless browser: Debian's chromium, driven
/// through its chromedriver by selenium (scripts/challenge-page-browser.py), completes a
/// TOTP challenge of the real daemon, after the page refused a wrong code; the mfaToken the
/// page holds then verifies, and the user's status is verified.
@Suite(.serialized) struct ChallengePageBrowserTests {
    static let key = "camfa-test-challengepage-0123456789abcdef"

    static var browserAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver")
            && (try? runTool("python3", ["-c", "import selenium, pyotp"]))??.status == 0
    }

    @Test func headlessChromiumCompletesATOTPChallenge() throws {
        guard BlackBox.requireKcat() else { return }
        guard Self.browserAvailable else {
            #expect(!isCI, "chromium, chromium-driver and python3 selenium are needed (scripts/install-deps.sh installs them)")
            return
        }
        let broker = try BlackBox.broker()
        let policies = try MFALoopBlackBoxTests.policies()
        let server = try HTTPDaemon(broker: broker, name: "challengepage", key: Self.key, scopes: ["evaluate", "status", "enroll"],
                                    http: "  challengePage:\n    enabled: true", policies: policies.path)
        defer { server.stop() }
        let base = server.base
        try server.waitUntilReady()

        let e = try server.call("POST", "/v1/users/dora/factors/totp")
        let secret = try #require(e.json["secret"] as? String, "\(e.text)")
        guard let codes = try MFALoopBlackBoxTests.codes(secret) else { return }
        let confirmed = try server.call("POST", "/v1/users/dora/factors/totp/confirm", body: #"{"code":"\#(codes.now)"}"#)
        #expect(confirmed.status == 200, "\(confirmed.text)")
        let challenge = try server.apiChallenge("dora")

        // A link to another user's or an unknown challenge shows nothing of it.
        let unknown = try HTTPBlackBoxTests.request("GET", base + "/challenge/\(challenge)?user=mallory")
        #expect(unknown.status == 404 && String(decoding: unknown.body, as: UTF8.self).contains("No open check"))

        let shots = try TemporaryDirectory("camfa-challenge-page")
        let keep = ProcessInfo.processInfo.environment["CAMFA_SCREENSHOTS"]
        let script = packageRoot.appendingPathComponent("scripts/challenge-page-browser.py").path
        let run = try #require(try runTool("python3", [script, base + "/challenge/\(challenge)?user=dora", secret, keep ?? shots.path]))
        try #require(run.status == 0, "the browser run failed: \(run.stderr.suffix(3000))")
        let page = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stdout)")
        #expect(page["status"] as? Int == 200 && page["title"] as? String == "Confirm it is you")
        let csp = page["csp"] as? String ?? ""
        #expect(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "\(csp)")
        #expect(page["frameOptions"] as? String == "DENY" && page["cacheControl"] as? String == "no-store")
        #expect((page["problem"] as? String)?.contains("not right") == true, "the wrong code was refused on the page: \(page)")
        #expect(page["verified"] as? String == "Verified", "\(page)")
        let token = page["mfaToken"] as? String ?? ""
        let checked = try server.call("POST", "/v1/tokens/verify", body: #"{"mfaToken":"\#(token)","audience":"crm"}"#)
        #expect(checked.json["valid"] as? Bool == true && checked.json["originalIdentity"] as? String == "dora"
                && checked.json["method"] as? String == "otp", "\(checked.text)")
        let status = try server.call("GET", "/v1/users/dora/mfa-status")
        #expect(status.json["mfaVerified"] as? Bool == true, "\(status.text)")
        // The page is closed once the challenge is verified.
        let after = try HTTPBlackBoxTests.request("GET", base + "/challenge/\(challenge)?user=dora")
        #expect(after.status == 404)
        #expect(FileManager.default.fileExists(atPath: (keep ?? shots.path) + "/challenge-page-verified.png"))
        #expect(!server.log.contains(token) && !server.log.contains(secret), "no token or secret in the log")
    }
}
