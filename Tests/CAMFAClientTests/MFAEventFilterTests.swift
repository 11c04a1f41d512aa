import CAMFAClient
import Foundation
import Testing

/// The subscription filter and deduplication (issue 26 item 3) on envelopes shaped as
/// schemas/mfa-event.schema.json says.
@Suite struct MFAEventFilterTests {
    static func envelope(id: String, user: String, app: String? = "portal", flow: String = "login_risk", action: String = "mfa") -> Data {
        let appJSON = app.map { "\"\($0)\"" } ?? "null"
        return Data(#"{"specversion":"1.0","id":"\#(id)","source":"urn:camfa","type":"authing.security.mfa","subject":"\#(user)","time":"2026-01-01T00:00:00.000Z","datacontenttype":"application/json","data":{"user":"\#(user)","appId":\#(appJSON),"methods":["otp"],"flow":"\#(flow)","action":"\#(action)"}}"#.utf8)
    }

    @Test func termsOnOneFieldAreAlternativesAndFieldsMustAllHold() throws {
        let f = try MFAEventFilter(parsing: ["originalIdentity=u1", "originalIdentity=u2", "action=mfa"])
        let u1 = try #require(MFAEvent(json: Self.envelope(id: "a", user: "u1")))
        let u2deny = try #require(MFAEvent(json: Self.envelope(id: "b", user: "u2", action: "deny")))
        let u3 = try #require(MFAEvent(json: Self.envelope(id: "c", user: "u3")))
        #expect(f.matches(u1))
        #expect(!f.matches(u2deny), "action must hold too")
        #expect(!f.matches(u3))
        #expect(MFAEventFilter().matches(u3), "no term matches everything")
        let noApp = try #require(MFAEvent(json: Self.envelope(id: "d", user: "u1", app: nil)))
        #expect(!(try MFAEventFilter(parsing: ["appId=portal"])).matches(noApp), "an absent field matches no value")
    }

    @Test func theSeedsSpellingIsAccepted() throws {
        let f = try MFAEventFilter(parsing: ["authing.security.mfa?originalIdentity=u%201&appId=portal"])
        #expect(f.terms == [.originalIdentity: ["u 1"], .appId: ["portal"]])
    }

    @Test func badTermsNameThemselves() {
        for (spec, words) in [("user=u1", "unknown field 'user'"), ("originalIdentity", "expected FIELD=VALUE"), ("appId=", "empty"),
                              ("other.topic?appId=a", "only the topic authing.security.mfa")] {
            do {
                _ = try MFAEventFilter(parsing: [spec])
                Issue.record("\(spec) was accepted")
            } catch {
                #expect(error.description.contains(words), "\(spec): \(error)")
            }
        }
    }

    @Test func notAnEnvelopeIsNotAnEvent() {
        #expect(MFAEvent(json: Data("{}".utf8)) == nil)
        #expect(MFAEvent(json: Data("not json".utf8)) == nil)
        #expect(MFAEvent(json: Data(#"{"id":"","subject":"u","data":{"action":"mfa"}}"#.utf8)) == nil)
    }

    @Test func eachIdPassesOnceWithinTheWindow() {
        var d = MFAEventDeduplicator(capacity: 3)
        let answers = ["a", "b", "a", "c", "d", "b", "d", "a"].map { d.isNew($0) }
        // The window holds 3: after d, a is forgotten (new again), b and d are not.
        #expect(answers == [true, true, false, true, true, false, false, true])
    }
}
