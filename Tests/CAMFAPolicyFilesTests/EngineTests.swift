import CAMFACore
import CAMFAPolicyFiles
import Testing
import CAMFATestSupport

@Suite struct EngineTests {
    static let failures = """
    policy: failures
    filter: event.behaviorType == "login"
    statistics:
      - name: n
        key: event.ip
        filter: event.behaviorResult == "failure"
        window: 10m
        aggregation: count
    judgment: stats.n >= 3
    returns:
      before: before.n
      current: stats.n
    """

    static let flow = """
    flow: guard
    apps: global
    policies: [failures]
    cooldown: 5m
    expiry: 10m
    branches:
      - when: policies.failures.hit
        mfa: [otp, sms]
    """

    @Test func beforeExcludesAndStatsIncludesTheCurrentEvent() throws {
        let set = try loadSet(["p.yaml": Self.failures, "f.yaml": Self.flow])
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        var last: [Decision] = []
        for i in 0..<3 {
            last = engine.process(event("u\(i)", at: 1_000 + Int64(i), result: "failure"), coordinates: "t/0/\(i)", state: &state).decisions
        }
        let d = try #require(last.first)
        #expect(d.action == .mfa)
        let reading = try #require(d.firedPolicies.first?.statistics.first)
        #expect(reading.before.isIdentical(to: .int(2)))
        #expect(reading.current.isIdentical(to: .int(3)))
        #expect(d.firedPolicies.first?.returns[string: "before"]?.isIdentical(to: .int(2)) == true)
    }

    @Test func eventsFilteredOutAreNotCounted() throws {
        let set = try loadSet(["p.yaml": Self.failures, "f.yaml": Self.flow])
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        // Access events fail the policy filter; they must not feed the window.
        for i in 0..<5 {
            _ = engine.process(event("u", at: Int64(i), type: "access", result: "failure"), coordinates: "t/0/\(i)", state: &state)
        }
        let d = engine.process(event("u", at: 10, result: "failure"), coordinates: "t/0/9", state: &state).decisions
        #expect(d.first?.action == .allow)
        #expect(d.first?.firedPolicies.isEmpty == true)
    }

    @Test func windowSlidesOverEventTime() throws {
        let set = try loadSet(["p.yaml": Self.failures, "f.yaml": Self.flow])
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        _ = engine.process(event("a", at: 0, result: "failure"), coordinates: "c/0", state: &state)
        _ = engine.process(event("a", at: 60_000, result: "failure"), coordinates: "c/1", state: &state)
        // Ten minutes after the first failure it has left the window: 2 in window, no hit.
        let d = engine.process(event("a", at: 600_000, result: "failure"), coordinates: "c/2", state: &state).decisions
        #expect(d.first?.action == .allow)
        let d2 = engine.process(event("a", at: 600_001, result: "failure"), coordinates: "c/3", state: &state).decisions
        #expect(d2.first?.action == .mfa)
    }

    @Test func cooldownSuppressesRepeatChallengesThenExpires() throws {
        let set = try loadSet(["p.yaml": Self.failures, "f.yaml": Self.flow])
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        var outcomes: [[String]] = []
        for (i, t) in [0, 1, 2, 3, 60_000, 400_000].enumerated() {
            outcomes.append(summary(engine.process(event("u", at: Int64(t), result: "failure"), coordinates: "c/\(i)", state: &state)))
        }
        #expect(outcomes == [["guard:allow"], ["guard:allow"], ["guard:mfa:otp,sms"], ["guard:cooldown"], ["guard:cooldown"],
                             // 400 s after the challenge, past the 5 min cooldown: a new one.
                             ["guard:mfa:otp,sms"]])
        let d = engine.process(event("u", at: 400_001, result: "failure"), coordinates: "c/9", state: &state).decisions
        let pending = state.pendingChallenges(user: "u", at: 400_001)
        #expect(pending.count == 1)
        #expect(d.first?.challengeId == pending.first?.id)
    }

    @Test func challengeIdsAreDeterministicInCoordinatesAndFlow() {
        let key = testChallengeKey
        let a = ChallengeID.make(coordinates: "camfa.ueba/3/1200", flow: "login_risk", key: key)
        #expect(a == ChallengeID.make(coordinates: "camfa.ueba/3/1200", flow: "login_risk", key: key))
        #expect(a != ChallengeID.make(coordinates: "camfa.ueba/3/1201", flow: "login_risk", key: key))
        #expect(a != ChallengeID.make(coordinates: "camfa.ueba/3/1200", flow: "other", key: key))
        #expect(a.count == 36)
        #expect(Array(a)[14] == "8")
    }

    /// Attack (issue 22): ids were an unkeyed hash of topic/partition/offset/flow, which
    /// anyone who can count offsets could compute. Keyed, the same coordinates give an
    /// unrelated id under another secret.
    @Test func challengeIdsDependOnTheSecret() {
        let other = ChallengeKey(secret: Array("another-secret-of-the-operator!!".utf8))
        let coordinates = (0..<200).map { "camfa.ueba/0/\($0)" }
        let mine = Set(coordinates.map { ChallengeID.make(coordinates: $0, flow: "login_risk", key: testChallengeKey) })
        let theirs = Set(coordinates.map { ChallengeID.make(coordinates: $0, flow: "login_risk", key: other) })
        #expect(mine.count == 200)
        #expect(mine.isDisjoint(with: theirs))
    }

    @Test func lateEventsAreRejected() throws {
        let set = try loadSet(["p.yaml": Self.failures, "f.yaml": Self.flow])
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        _ = engine.process(event("u", at: 10_000_000), coordinates: "c/0", state: &state)
        let lateness = set.options.allowedLateness
        #expect(summary(engine.process(event("u", at: 10_000_000 - lateness), coordinates: "c/1", state: &state)) == ["guard:allow"])
        #expect(summary(engine.process(event("u", at: 10_000_000 - lateness - 1), coordinates: "c/2", state: &state)) == ["rejected:late"])
    }

    @Test func appFlowsReplaceGlobalFlows() throws {
        let set = try loadSet(["p.yaml": Self.failures, "f.yaml": Self.flow + """

        ---
        flow: finance
        apps: [finance-app]
        branches:
          - when: '"finance" in user.groups'
            mfa: [sms]
        """])
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        let fin = event("f", at: 1, app: "finance-app", custom: [("userGroups", .list([.string("finance")]))])
        #expect(summary(engine.process(fin, coordinates: "c/0", state: &state)) == ["finance:mfa:sms"])
        #expect(summary(engine.process(event("f", at: 2, app: "mail"), coordinates: "c/1", state: &state)) == ["guard:allow"])
    }

    @Test func expressionErrorsAreReportedNotSilentlyFalse() throws {
        let set = try loadSet(["p.yaml": """
        policy: dept
        judgment: event.custom.department == "finance"
        """, "f.yaml": """
        flow: f
        policies: [dept]
        branches:
          - when: policies.dept.hit
            deny: true
        """])
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        let d = try #require(engine.process(event("u", at: 1), coordinates: "c/0", state: &state).decisions.first)
        #expect(d.action == .allow)
        #expect(d.errors.count == 1)
        #expect(d.errors.first?.contains("dept") == true)
    }

    @Test func sameEventsSameDecisions() throws {
        let set = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        func run() -> [[Decision]] {
            var state = PartitionState(policySet: set)
            var out: [[Decision]] = []
            for i in 0..<400 {
                let user = "u\(i % 7)"
                let e = event(user, at: Int64(i) * 7_000, app: ["portal", "mail", "crm", "wiki", "chat", "finance-app"][i % 6],
                              result: i % 5 == 0 ? "failure" : "success", ip: "198.51.100.\(i % 3)",
                              city: ["Paris", "Tokyo", "Lima"][(i / 50) % 3],
                              custom: [("sessionId", .string("s\(i / 10)")), ("deviceId", .string("d\(i % 4)"))])
                out.append(engine.process(e, coordinates: "t/0/\(i)", state: &state).decisions)
            }
            return out
        }
        let a = run(), b = run()
        #expect(a == b)
        #expect(a.joined().contains { $0.action == .mfa })
    }
}

/// Geo velocity as policies see it: `event.velocity` from the user's previous located
/// event, kept in the engine's user state (so checkpoints carry it).
@Suite struct VelocityPolicyTests {
    static let policy = """
    policy: impossible_travel
    filter: event.behaviorType == "login" && has(event.velocity)
    judgment: event.velocity.minimumSpeedKmh > 1000.0
    returns:
      speed: event.velocity.minimumSpeedKmh
      from: event.velocity.previousCity
    """
    static let flow = """
    flow: travel
    policies: [impossible_travel]
    branches:
      - when: policies.impossible_travel.hit
        mfa: [otp]
    """

    func located(_ user: String, at t: Int64, city: String, lat: Double, lon: Double) -> UEBAEvent {
        var e = event(user, at: t, city: city)
        e.geo = GeoInfo(latitude: lat, longitude: lon, accuracyRadius: 20)
        return e
    }

    @Test func parisToTokyoInAnHourIsImpossibleTravel() throws {
        let set = try loadSet(["p.yaml": Self.policy, "f.yaml": Self.flow])
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        let t0: Int64 = 1_767_225_600_000
        #expect(summary(engine.process(located("u", at: t0, city: "Paris", lat: 48.8566, lon: 2.3522), coordinates: "c/0", state: &state)) == ["travel:allow"])
        let d = try #require(engine.process(located("u", at: t0 + 3_600_000, city: "Tokyo", lat: 35.6762, lon: 139.6503),
                                            coordinates: "c/1", state: &state).decisions.first)
        #expect(d.action == .mfa)
        let returns = try #require(d.firedPolicies.first?.returns)
        #expect(returns[string: "from"]?.isIdentical(to: .string("Paris")) == true)
        if case .double(let speed)? = returns[string: "speed"] { #expect(speed > 9_000 && speed < 10_000) } else { Issue.record("no speed") }
    }

    @Test func theSameCityTwiceIsNot() throws {
        let set = try loadSet(["p.yaml": Self.policy, "f.yaml": Self.flow])
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        let t0: Int64 = 1_767_225_600_000
        _ = engine.process(located("u", at: t0, city: "Paris", lat: 48.8566, lon: 2.3522), coordinates: "c/0", state: &state)
        // Two nearby points ten seconds apart: within both accuracy radii, so speed 0.
        let d = engine.process(located("u", at: t0 + 10_000, city: "Paris", lat: 48.86, lon: 2.35), coordinates: "c/1", state: &state)
        #expect(summary(d) == ["travel:allow"])
    }

    @Test func velocitySurvivesACheckpoint() throws {
        let set = try loadSet(["p.yaml": Self.policy, "f.yaml": Self.flow])
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        let t0: Int64 = 1_767_225_600_000
        _ = engine.process(located("u", at: t0, city: "Paris", lat: 48.8566, lon: 2.3522), coordinates: "c/0", state: &state)
        var restored = try PartitionState(restoring: state.serialized(), policySet: set)
        let d = engine.process(located("u", at: t0 + 3_600_000, city: "Tokyo", lat: 35.6762, lon: 139.6503), coordinates: "c/1", state: &restored)
        #expect(summary(d) == ["travel:mfa:otp"])
    }
}
