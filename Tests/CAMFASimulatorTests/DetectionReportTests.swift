import CAMFACore
import CAMFAPolicyFiles
import CAMFATestSupport
import Testing

@testable import CAMFASimulator

/// The scorer reads what the product writes: MFA events made by the real envelope and
/// replay lines made by the real decision encoder, from decisions of the real engine.
@Suite struct DetectionReportTests {
    static let t: Int64 = 1_767_225_600_000

    /// Four logins through the example policies: u1 from outside the office (challenged),
    /// u2 and u3 from the office LAN (allowed), u4 a failed attempt from outside.
    static func decided() throws -> [(UEBAEvent, [Decision])] {
        let set = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        let events = [
            UEBAEvent(appId: "portal", requestDate: t, ip: "203.0.113.9", originalIdentity: "u1", behaviorType: "login", behaviorResult: "success"),
            UEBAEvent(appId: "portal", requestDate: t + 1, ip: "10.20.1.1", originalIdentity: "u2", behaviorType: "login", behaviorResult: "success"),
            UEBAEvent(appId: "portal", requestDate: t + 2, ip: "10.20.1.2", originalIdentity: "u3", behaviorType: "login", behaviorResult: "success"),
            UEBAEvent(appId: "portal", requestDate: t + 3, ip: "203.0.113.9", originalIdentity: "u4", behaviorType: "login", behaviorResult: "failure"),
        ]
        return events.enumerated().map { i, e in (e, engine.process(e, coordinates: "t/0/\(i)", state: &state).decisions) }
    }

    static let labels = [
        DetectionReport.Label(user: "u1", requestDate: t, behaviour: "ato.targeted", attack: true, success: true),
        DetectionReport.Label(user: "u2", requestDate: t + 1, behaviour: "legit.office", attack: false, success: true),
        DetectionReport.Label(user: "u3", requestDate: t + 2, behaviour: "legit.office", attack: false, success: true),
        DetectionReport.Label(user: "u4", requestDate: t + 3, behaviour: "ato.stuffing", attack: true, success: false),
    ]

    @Test func scoresMFAEventsFromTheTopic() throws {
        var lines: [UInt8] = []
        for (e, ds) in try Self.decided() {
            for d in ds where d.issuesChallenge {
                lines += JSONWriter.encode(MFAEvent.envelope(decision: d, event: e, coordinates: nil, source: "urn:test")) + [0x0A]
            }
        }
        // One more for a login no label knows.
        let stray = UEBAEvent(appId: "portal", requestDate: Self.t + 9, ip: "203.0.113.9", originalIdentity: "x", behaviorType: "login")
        let (_, d0) = try Self.decided()[0]
        lines += JSONWriter.encode(MFAEvent.envelope(decision: d0.first { $0.issuesChallenge }!, event: stray, coordinates: nil, source: "urn:test"))
        let report = DetectionReport(labels: Self.labels, challenged: try DetectionReport.challenged(jsonLines: lines, file: "m.jsonl"))
        #expect(report.takeovers == .init(logins: 1, challenged: 1))
        #expect(report.legitimate == .init(logins: 2, challenged: 0))
        #expect(report.rows.map(\.behaviour) == ["ato.stuffing", "ato.targeted", "legit.office"])
        #expect(report.rows.map(\.logins) == [1, 1, 2])
        #expect(report.unmatched == 1)
        #expect(report.text.contains("account-takeover logins challenged:    100.0 % (1 of 1)"), "\(report.text)")
    }

    /// `camfa replay` lines score the same, so a policy change can be judged offline.
    @Test func scoresReplayOutputTheSame() throws {
        var lines: [UInt8] = []
        for (e, ds) in try Self.decided() {
            lines += JSONWriter.encode(.map(ValueMap([("user", .string(e.originalIdentity)), ("requestDate", .int(e.requestDate)),
                                                      ("decisions", .list(ds.map(\.jsonValue)))]))) + [0x0A]
        }
        lines += Array(#"{"line":9,"invalid":{"code":"wrongType","message":"…"}}"#.utf8)  // no user: not a login
        let replayed = try? DetectionReport.challenged(jsonLines: lines, file: "r.jsonl")
        #expect(replayed == nil, "a line that is neither form is an error naming it")
        lines.removeLast(lines.count - (lines.lastIndex(of: 0x0A)! + 1))
        let report = DetectionReport(labels: Self.labels, challenged: try DetectionReport.challenged(jsonLines: lines, file: "r.jsonl"))
        #expect(report.takeovers.percent == 100 && report.legitimate.percent == 0 && report.unmatched == 0)
    }

    @Test func aBadLabelNamesItsLine() {
        let text = Array("""
        {"user":"u1","requestDate":1,"behaviour":"legit.home","attack":false,"success":true}

        {"user":"u2","requestDate":"soon","behaviour":"legit.home","attack":false,"success":true}
        """.utf8)
        do {
            _ = try DetectionReport.labels(jsonLines: text, file: "l.jsonl")
            Issue.record("accepted a bad label")
        } catch {
            #expect(error.line == 3 && error.file == "l.jsonl", "\(error)")
        }
    }
}
