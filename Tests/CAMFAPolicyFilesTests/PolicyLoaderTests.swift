import CAMFACore
import CAMFAPolicyFiles
import Testing
import CAMFATestSupport

@Suite struct PolicyLoaderTests {
    static let flow = """
    flow: f
    apps: global
    policies: [p]
    branches:
      - when: policies.p.hit
        mfa: [sms]
    """

    @Test func theExamplesLoad() throws {
        let set = try PolicyLoader.loadPolicySet(at: packageRoot.appendingPathComponent("policies/examples").path)
        #expect(set.policies.map(\.name).sorted() == ["extranet", "ip_velocity", "mfa_fatigue", "session_change", "usual_location"])
        #expect(set.flows.map(\.name).sorted() == ["api_login", "continuous_session", "internal_apps", "login_risk"])
        // ip_velocity's two windows share one keyspace (the IP), usual_location's profile and
        // mfa_fatigue's count another (the user), the two session statistics a third.
        #expect(set.keyspaces.count == 3)
    }

    @Test func rememberDeviceAndAcrAreReadAndCheckedWhereTheyStand() throws {
        let policy = "policy: p\nfilter: event.behaviorType == \"login\"\njudgment: 'true'\n"
        let set = try loadSet(["p.yaml": policy, "f.yaml": Self.flow.replacingOccurrences(of: "apps: global", with: "apps: global\nrememberDevice: 30d\nacr: urn:x")])
        #expect(set.flows[0].rememberDevice == 30 * 86_400_000 && set.flows[0].acr == "urn:x")
        let errors = try loadErrors(["p.yaml": policy, "f.yaml": Self.flow.replacingOccurrences(of: "apps: global", with: "apps: global\nrememberDevice: 500d\nacr: ''")])
        #expect(errors.map(\.location.line).sorted() == [3, 4], "\(errors)")
    }

    @Test func typeErrorNamesFileLineAndColumn() throws {
        let errors = try loadErrors(["p.yaml": """
        policy: p
        filter: event.behaviorType == "login"
        judgment: event.requestDate + "x" > 3
        """, "f.yaml": Self.flow])
        #expect(errors.count == 1)
        let e = try #require(errors.first)
        #expect(e.location.file == "p.yaml")
        #expect(e.location.line == 3)
        // The column points inside the expression, at or after `event` (column 11).
        #expect(e.location.column >= 11)
        #expect(e.code == .expression)
    }

    @Test func unknownFieldOnTheEventIsALoadError() throws {
        let errors = try loadErrors(["p.yaml": """
        policy: p
        judgment: event.citty == "Paris"
        """, "f.yaml": Self.flow])
        let e = try #require(errors.first)
        #expect(e.location.line == 2)
        #expect(e.message.contains("citty"))
    }

    /// Issue 22 (input-path audit): numbers in policy files that overflowed Int64 trapped
    /// the loader (a start, or a reload, died): a multi-part duration whose parts fit and
    /// whose sum does not, and a huge `top`. Load errors now; and an expiry as long as
    /// Int64 allows saturates instead of overflowing at the first challenge.
    @Test func overflowingNumbersAreLoadErrorsAndAHugeExpirySaturates() throws {
        let half = "5000000000000000000ms"
        let errors = try loadErrors(["p.yaml": """
        policy: p
        statistics:
          - name: n
            key: event.originalIdentity
            window: \(half)\(half)
            aggregation: count
          - name: c
            key: event.originalIdentity
            window: 1h
            aggregation: profile
            value: event.city
            top: 9223372036854775807
        judgment: stats.n > 0
        """, "f.yaml": Self.flow])
        #expect(errors.contains { $0.location.line == 5 }, "\(errors)")
        #expect(errors.contains { $0.message.contains("top (9223372036854775807)") }, "\(errors)")

        let set = try loadSet(["p.yaml": "policy: p\njudgment: true\n", "f.yaml": """
        flow: f
        policies: [p]
        expiry: 9223372036854775807ms
        branches:
          - when: policies.p.hit
            mfa: [otp]
        """])
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        let d = engine.process(event("u", at: 1_767_225_600_000), coordinates: "t/0/0", state: &state).decisions
        #expect(d.first?.action == .mfa)
        #expect(d.first?.expiresAt == Int64.max)
    }

    @Test func judgmentMustBeBool() throws {
        let errors = try loadErrors(["p.yaml": "policy: p\njudgment: event.requestDate + 1\n", "f.yaml": Self.flow])
        #expect(errors.count == 1)
        #expect(errors.first?.location.line == 2)
    }

    @Test func unknownKeysMissingKeysAndBadValuesAreAllReported() throws {
        let errors = try loadErrors(["p.yaml": """
        policy: p
        judgement: true
        statistics:
          - name: n
            key: event.ip
            window: ten minutes
            aggregation: median
        """, "f.yaml": Self.flow])
        let messages = errors.map { "\($0.location.line):\($0.message)" }
        #expect(messages.contains { $0.hasPrefix("2:") && $0.contains("unknown key 'judgement'") })
        #expect(messages.contains { $0.hasPrefix("6:") && $0.contains("window") })
        #expect(messages.contains { $0.hasPrefix("7:") && $0.contains("median") })
        #expect(messages.contains { $0.contains("missing 'judgment'") })
    }

    @Test func yamlSyntaxErrorHasAPosition() throws {
        let errors = try loadErrors(["p.yaml": "policy: p\njudgment: [unclosed\n", "f.yaml": Self.flow])
        let e = try #require(errors.first { $0.location.file == "p.yaml" })
        #expect(e.code == .yamlSyntax)
        #expect(e.location.line >= 2)
    }

    @Test func flowErrors() throws {
        let errors = try loadErrors(["f.yaml": """
        flow: f
        trigger: kafka
        apps: global
        policies: [nope]
        branches:
          - when: "true"
            mfa: [sms, pigeon]
          - when: "true"
            allow: true
            deny: true
        """, "p.yaml": "policy: p\njudgment: \"true\"\n"])
        let messages = errors.map { "\($0.location.line):\($0.message)" }
        #expect(messages.contains { $0.hasPrefix("2:") && $0.contains("ueba") })
        #expect(messages.contains { $0.contains("'nope'") })
        #expect(messages.contains { $0.hasPrefix("7:") && $0.contains("pigeon") })
        #expect(messages.contains { $0.hasPrefix("8:") && $0.contains("exactly one") })
    }

    @Test func flowExpressionsAreCheckedAgainstThePoliciesTheyUse() throws {
        let errors = try loadErrors(["p.yaml": "policy: p\njudgment: \"true\"\n", "f.yaml": """
        flow: f
        policies: [p]
        branches:
          - when: policies.p.hti
            allow: true
        """])
        let e = try #require(errors.first)
        #expect(e.location.line == 4)
        #expect(e.message.contains("hti"))
    }

    @Test func blockScalarErrorsMapToTheirLine() throws {
        let errors = try loadErrors(["p.yaml": """
        policy: p
        judgment: |
          event.ip == "1.2.3.4" &&
            event.nope == 1
        """, "f.yaml": Self.flow])
        let e = try #require(errors.first)
        #expect(e.location.line == 4)
        // `nope`, after the block's own indentation and the line's extra two spaces.
        #expect(e.location.column == 11)
    }

    @Test func anInvalidWindowIsAnErrorNotACrash() throws {
        let errors = try loadErrors(["p.yaml": """
        policy: p
        statistics:
          - name: cities
            key: event.originalIdentity
            value: event.city
            window: 30d
            aggregation: profile
            capacity: 100000
        judgment: "true"
        """, "f.yaml": Self.flow])
        let e = try #require(errors.first)
        #expect(e.location.line == 3)
        #expect(e.message.contains("cities"))
    }

    @Test func durations() {
        #expect(DurationText.milliseconds("10m") == 600_000)
        #expect(DurationText.milliseconds("1h30m") == 5_400_000)
        #expect(DurationText.milliseconds("500ms") == 500)
        #expect(DurationText.milliseconds("30d") == 2_592_000_000)
        #expect(DurationText.milliseconds("10") == nil)
        #expect(DurationText.milliseconds("m") == nil)
        #expect(DurationText.milliseconds("5w") == nil)
    }

    /// Issue 24 item 2: a statistic of another key is counted in that key's task, which has
    /// the event and not the user's state. Reading `user` or `event.velocity` in what decides
    /// what it counts is a load error at the use; a risk statistic must be keyed by the user.
    @Test func statisticsOfOtherKeysCannotReadTheUsersState() throws {
        func policy(filter: String, key: String, value: String, statFilter: String = "true") -> [String: String] {
            ["p.yaml": """
            policy: p
            filter: \(filter)
            statistics:
              - name: n
                key: \(key)
                value: \(value)
                filter: \(statFilter)
                window: 1h
                aggregation: distinctCount
            judgment: stats.n > 3
            """, "f.yaml": Self.flow]
        }
        let byUser = try loadErrors(policy(filter: "user.mfa.pending == false", key: "event.originalIdentity", value: "event.velocity.speedKmh"))
        #expect(byUser.isEmpty, "a statistic kept with its user may read the user's state: \(byUser)")
        for (files, line, words) in [
            (policy(filter: "user.mfa.pending == false", key: "event.ip", value: "event.originalIdentity"), 2, "keyed by event.ip"),
            (policy(filter: "true", key: "event.ip", value: "event.velocity.speedKmh"), 6, "value"),
            (policy(filter: "true", key: "\"[event.ip, event.appId]\"", value: "event.city", statFilter: "size(user.groups) > 0"), 7, "filter"),
        ] {
            let errors = try loadErrors(files)
            #expect(errors.count == 1, "\(errors)")
            let e = try #require(errors.first)
            #expect(e.code == .expression && e.location.file == "p.yaml" && e.location.line == line, "\(e)")
            #expect(e.message.contains(words) && e.message.contains("`user` and `event.velocity` cannot be read"), "\(e.message)")
        }
        let risk = try loadErrors(["p.yaml": """
        policy: p
        statistics:
          - name: r
            key: event.ip
            window: 30d
            aggregation: risk
            features:
              ua: event.ua
        judgment: "true"
        """, "f.yaml": Self.flow])
        #expect(risk.count == 1 && risk.first?.message.contains("its key must be event.originalIdentity") == true, "\(risk)")
    }
}
