import CAMFACore
@testable import CAMFADaemon
@testable import CAMFAServer
import Testing

/// The hosted challenge page's pure parts: what its form accepts, and that nothing a
/// caller puts in a link or a form reaches the HTML unescaped.
@Suite struct ChallengePageTests {
    @Test func theFormTakesItsFieldsAndRefusesOthers() throws {
        let f = try ChallengePage.form(Array("user=dora%40example.com&method=otp&code=+287082+&action=verify".utf8))
        #expect(f == ChallengePage.Form(user: "dora@example.com", method: .otp, code: "287082", action: "verify"))
        for bad in ["method=otp&action=verify", "user=u&method=face&action=verify", "user=u&method=otp&action=steal",
                    "user=u&method=otp&action=verify&admin=1", "user=%ZZ&method=otp&action=verify"] {
            #expect(throws: APIError.self, "\(bad)") { try ChallengePage.form(Array(bad.utf8)) }
        }
    }

    @Test func linkAndFormInputIsEscaped() {
        let html = ChallengePage.challenge(id: "\"><script>x</script>", user: "<img src=x onerror=alert(1)>", methods: [.otp, .sms], selected: .sms,
                                           problem: ChallengePage.problem(PipelineRequestError(code: .wrongCode, message: "<b>")))
        #expect(!html.contains("<script>") && !html.contains("<img"))
        #expect(html.contains("&lt;img src=x onerror=alert(1)&gt;"))
        #expect(html.contains(#"value="sms" id="method-sms" checked"#))
        let done = ChallengePage.verified(token: "a.b.c", returnURL: "https://app.example.com/done?x=\"1\"")
        #expect(done.contains(#"action="https://app.example.com/done?x=&quot;1&quot;""#) && done.contains(#"<output id="mfaToken">a.b.c</output>"#))
    }

    @Test func thePageLoadsNothingAndCannotBeFramed() {
        let h = ChallengePage.headers(returnURL: "https://app.example.com:8443/done")
        let csp = h[.contentSecurityPolicy] ?? ""
        #expect(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"))
        #expect(csp.contains("form-action 'self' https://app.example.com:8443;"))
        #expect(h[.cacheControl] == "no-store")
    }
}
