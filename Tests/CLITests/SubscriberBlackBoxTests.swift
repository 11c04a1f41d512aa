import CAMFAClient
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import CAMFATestSupport
import Testing

extension ClientBlackBoxTests {
    /// Issue 26 item 1, the library's other calls with the real daemon and broker: API mode's
    /// `evaluate` as typed decisions and camfa's refusals as typed errors; `capture` and
    /// `MFASubscriber`: the user's challenge and its clearing arrive typed, each once, and a
    /// new stream of the group resumes after the last event handled, whether the previous one
    /// was closed or its task cancelled.
    @Suite struct ClientLibraryBlackBoxTests {
        static let evaluateKey = "camfa-test-lib-evaluate-0123456789abcdef"
        static let resultsKey = "camfa-test-lib-results-0123456789abcdef"

        @Test func evaluateCaptureAndSubscribeWithTheRealDaemon() async throws {
            guard BlackBox.requireKcat() else { return }
            let broker = try BlackBox.broker()
            let port = HTTPBlackBoxTests.freePort()
            let daemon = try ClientBlackBoxTests.daemon(broker, name: "library", port: port,
                                                        keys: [(Self.evaluateKey, "evaluate"), (Self.resultsKey, "results")])
            defer { _ = daemon.stop() }
            let base = URL(string: "http://127.0.0.1:\(port)")!
            let api = EvaluateClient(baseURL: base, apiKey: Self.evaluateKey)

            // API mode: four apps from one IP, then a fifth is the burst (api_login).
            let t0 = HTTPBlackBoxTests.nowMs, ip = "10.20.5.5"
            var first: Evaluation?
            let ready = Date().addingTimeInterval(60)
            while first == nil, Date() < ready {
                do { first = try await api.evaluate(json: HTTPBlackBoxTests.event(user: "lib-k0", app: "portal", ip: ip, time: t0)) } catch {
                    // Until the partition is assigned and restored: 503 unavailable.
                    #expect(error.code == .refused("unavailable") || error.code == .noAnswer, "\(error)")
                    try await Task.sleep(nanoseconds: 250_000_000)
                }
            }
            let allowed = try #require(first, "\(daemon.log.suffix(2000))")
            #expect(!allowed.mfaRequired && allowed.decisions.allSatisfy { $0.action == .allow } && allowed.coordinates.topic == "in.library")
            for (i, app) in ["mail", "crm", "wiki"].enumerated() {
                _ = try await api.evaluate(json: HTTPBlackBoxTests.event(user: "lib-k\(i + 1)", app: app, ip: ip, time: t0 + 1 + Int64(i)))
            }
            let burst = try await api.evaluate(json: HTTPBlackBoxTests.event(user: "lib-bob", app: "hr", ip: ip, time: t0 + 10))
            #expect(burst.mfaRequired && burst.coordinates.offset > allowed.coordinates.offset)
            let mfa = try #require(burst.decisions.first { $0.action == .mfa }, "\(burst)")
            #expect(mfa.flow == "api_login" && mfa.methods == ["otp", "sms"] && mfa.mfaEventId != nil && mfa.branch != nil)
            #expect((mfa.expiresAt ?? .distantPast) > Date(timeIntervalSince1970: Double(t0) / 1000), "expiresAt after the event: \(mfa)")
            let fired = try #require(mfa.firedPolicies.first, "\(mfa)")
            #expect(!fired.policy.isEmpty && !fired.judgment.isEmpty && !fired.statistics.isEmpty, "\(fired)")
            #expect(fired.statistics.values.contains { if case .number(let n) = $0.current { n >= 5 } else { false } }, "the fifth app counted: \(fired)")

            // Refusals keep camfa's code and field.
            do {
                _ = try await api.evaluate(json: Data(#"{"originalIdentity":"x","requestDate":"yesterday"}"#.utf8))
                Issue.record("an invalid event was evaluated")
            } catch {
                #expect(error.code == .refused("invalid") && error.status == 400 && error.field == "requestDate", "\(error)")
            }
            do {
                _ = try await EvaluateClient(baseURL: base, apiKey: "wrong").evaluate(json: HTTPBlackBoxTests.event(user: "x", app: "portal", ip: ip, time: t0))
                Issue.record("an unknown key was let in")
            } catch {
                #expect(error.code == .refused("unauthorized") && error.status == 401, "\(error)")
            }

            // capture → the event flow → an MFA event, read typed by the subscriber.
            let user = "lib-\(UUID().uuidString.prefix(6))", group = "lib-sub-\(UUID().uuidString)"
            let subscriber = MFASubscriber(bootstrap: broker.bootstrap, group: group, topic: "out.library")
            let filter = try MFAEventFilter(parsing: ["originalIdentity=\(user)"])
            let capture = try EventCapture(bootstrap: broker.bootstrap, topic: "in.library")
            try capture.capture(json: HTTPBlackBoxTests.event(user: "lib-other", app: "portal", ip: "203.0.113.9", time: t0 + 20))
            try capture.capture(json: HTTPBlackBoxTests.event(user: user, app: "portal", ip: "203.0.113.7", time: t0 + 21))
            #expect(capture.flush() && capture.failures.count == 0)
            #expect(throws: EventCapture.CaptureError.self) { try capture.capture(json: Data(#"{"appId":"portal"}"#.utf8)) }

            let stream1 = try subscriber.subscribe(filter: filter, from: .beginning)
            let challenge = try #require(await Self.next(stream1, within: 60), "no MFA event for \(user)\n\(daemon.log.suffix(2000))")
            #expect(challenge.originalIdentity == user && challenge.action == .mfa && challenge.flow == "login_risk" && challenge.appId == "portal")
            #expect(challenge.methods == ["otp", "sms"] && challenge.failMode == .open && challenge.expiresAt != nil)
            #expect(MFAEvent(json: challenge.envelope) == challenge, "the envelope as published")
            await stream1.close()

            // Verified: the clearing is the next event of the group, not the challenge again.
            var result = URLRequest(url: base.appendingPathComponent("v1/mfa-results"))
            result.httpMethod = "POST"
            result.setValue("Bearer \(Self.resultsKey)", forHTTPHeaderField: "Authorization")
            result.httpBody = Data(#"{"mfaEventId":"\#(challenge.id)","user":"\#(user)","method":"otp","result":"verified"}"#.utf8)
            let (_, posted) = try await URLSession(configuration: .ephemeral).data(for: result)
            #expect((posted as! HTTPURLResponse).statusCode == 200)
            let stream2 = try subscriber.subscribe(filter: filter, from: .beginning)
            let handed = Handed()
            let reader = Task { for await e in stream2 { handed.append(e) } }
            let seen = Date().addingTimeInterval(60)
            while handed.events.isEmpty, Date() < seen { try await Task.sleep(nanoseconds: 250_000_000) }
            // A little longer, so a repeat would show.
            try await Task.sleep(nanoseconds: 1_500_000_000)
            reader.cancel()
            let stopping = Date()
            await reader.value
            #expect(Date().timeIntervalSince(stopping) < 3, "a cancelled stream ends promptly")
            let events = handed.events
            #expect(events.map(\.action) == [.cleared] && events.first?.challengeId == challenge.id && events.first?.clearedBy == "verified",
                    "\(events)")

            // Cancelled after the clearing was handled: a new stream starts after it.
            let marker = UUID().uuidString.lowercased()
            try BlackBox.produce(broker.bootstrap, topic: "out.library", [
                (key: user, value: SubscribeBlackBoxTests.envelope(id: marker, user: user, action: "deny")),
            ])
            let stream3 = try subscriber.subscribe(filter: filter, from: .beginning)
            let after = await Self.next(stream3, within: 60)
            #expect(after?.id == marker && after?.action == .deny, "\(String(describing: after))")
            await stream3.close()
        }

        /// The stream's next event, or nil when none came within `seconds`.
        static func next(_ stream: MFAEventStream, within seconds: Double) async -> MFAEvent? {
            await withTaskGroup(of: MFAEvent?.self) { group in
                group.addTask {
                    var it = stream.makeAsyncIterator()
                    return await it.next()
                }
                group.addTask {
                    try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                    return nil
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
        }
    }
}

private final class Handed: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [MFAEvent] = []
    func append(_ e: MFAEvent) { lock.withLock { list.append(e) } }
    var events: [MFAEvent] { lock.withLock { list } }
}
