@testable import CAMFACore
import CAMFAPolicyFiles
import CAMFATestSupport
import Foundation
import Testing

/// Issue 23 item 1: the `risk` aggregation, judged against a brute-force computation of the
/// formula in RiskScore.swift over whole histories, and across checkpoint and restore.
@Suite struct RiskScoreTests {
    static func policy(halfLife: String = "2d", capacity: Int = 8, populationCapacity: Int = 512, extra: String = "") -> [String: String] {
        [
            "risk.yaml": """
            policy: risky
            filter: event.behaviorType == "login"
            statistics:
              - name: risk
                key: event.originalIdentity
                filter: event.behaviorResult == "success"
                window: 400d
                aggregation: risk
                halfLife: \(halfLife)
                capacity: \(capacity)
                populationCapacity: \(populationCapacity)
                smoothing: 1.5
                levels: {medium: 3, high: 6}
                features:
                  ip: event.ip
                  net: ipPrefix(event.ip, 24, 48)
                  device: event.custom.deviceId
                  ua: event.ua
            judgment: "true"
            returns:
              score: stats.risk.score
              level: stats.risk.level
              logins: stats.risk.logins
              newFeatures: stats.risk.newFeatures
              features: stats.risk.features
              same: before.risk.score == stats.risk.score
            \(extra)
            """,
            "flow.yaml": """
            flow: f
            trigger: ueba
            apps: global
            policies: [risky]
            cooldown: 1ms
            expiry: 10m
            failMode: open
            branches:
              - when: policies.risky.hit
                mfa: [otp]
            """,
        ]
    }

    struct Login {
        var user: String
        var t: Int64
        var features: [String?]  // ip, net, device, ua
        var success: Bool
    }

    static func stream(seed: UInt64, count: Int) -> [Login] {
        var rng = SeededRandom(seed: seed)
        var t: Int64 = 1_767_225_600_000
        let ips = ["203.0.113.7", "203.0.113.9", "198.51.100.20", "192.0.2.1", "2001:db8::1"]
        return (0..<count).map { _ in
            // Forward by minutes to days (so decay and the rescale at 16 half-lives both
            // happen), sometimes a little back (within the allowed lateness).
            switch rng.int(10) {
            case 0: t -= Int64(rng.int(120_000))
            case 1: t += Int64(rng.int(3 * 86_400_000))
            default: t += Int64(rng.int(3_600_000))
            }
            let ip = ips[rng.int(rng.int(3) == 0 ? ips.count : 2)]
            let device: String? = rng.int(5) == 0 ? nil : "d\(rng.int(rng.int(4) == 0 ? 4 : 2))"
            let ua = "agent \(rng.int(3))"
            return Login(user: "u\(rng.int(6))", t: t, features: [ip, Self.net(ip), device, ua], success: rng.int(6) != 0)
        }
    }

    static func net(_ ip: String) -> String {
        ip.contains(":") ? "2001:db8:0:0:0:0:0:0/48" : ip.split(separator: ".").prefix(3).joined(separator: ".") + ".0/24"
    }

    static func uebaEvent(_ l: Login) -> UEBAEvent {
        var e = event(l.user, at: l.t, result: l.success ? "success" : "failure", ip: l.features[0])
        e.ua = l.features[3]
        if let d = l.features[2] { e.custom = ValueMap([("deviceId", .string(d))]) }
        return e
    }

    /// The formula of RiskScore.swift, from the raw history: no state, no decay arithmetic
    /// other than 2^(−Δt/h) per past login.
    static func bruteForce(_ l: Login, history: [Login], halfLife: Double, alpha: Double) -> (score: Double, bits: [Double?]) {
        let trained = history.filter(\.success)
        let mine = trained.filter { $0.user == l.user }
        func w(_ x: Login) -> Double { exp2(-Double(l.t - x.t) / halfLife) }
        var score = 0.0
        var bits: [Double?] = []
        for k in l.features.indices {
            guard let x = l.features[k] else { bits.append(nil); continue }
            let cp = trained.filter { $0.features[k] == x }.map(w).reduce(0, +)
            let np = trained.filter { $0.features[k] != nil }.map(w).reduce(0, +)
            let cu = mine.filter { $0.features[k] == x }.map(w).reduce(0, +)
            let nu = mine.filter { $0.features[k] != nil }.map(w).reduce(0, +)
            let pp = (cp + 1) / (np + 1)
            let pu = (cu + alpha * pp) / (nu + alpha)
            let b = log2(pp / pu)
            bits.append(b)
            score += b
        }
        return (score, bits)
    }

    static func returns(_ outcome: EvaluationOutcome) -> ValueMap? {
        guard case .decided(let ds) = outcome, let p = ds.first?.firedPolicies.first else { return nil }
        return p.returns
    }

    static func double(_ v: Value?) -> Double? {
        if case .double(let d)? = v { return d }
        return nil
    }

    static func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-9 * max(1, abs(b)) }

    @Test(arguments: 0..<6)
    func theScoreMatchesABruteForceComputationOfTheFormula(seed: Int) throws {
        let set = try loadSet(Self.policy())
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        let logins = Self.stream(seed: UInt64(seed) &+ 4_242, count: 300)
        let names = ["ip", "net", "device", "ua"]
        var nonzero = 0, known = 0
        for (i, l) in logins.enumerated() {
            let r = try #require(Self.returns(engine.process(Self.uebaEvent(l), coordinates: "t/0/\(i)", state: &state)), "event \(i)")
            let expected = Self.bruteForce(l, history: Array(logins[..<i]), halfLife: 2 * 86_400_000, alpha: 1.5)
            let score = try #require(Self.double(r[string: "score"]))
            #expect(Self.close(score, expected.score), "event \(i): \(score) vs \(expected.score)")
            #expect(r[string: "same"] == .bool(true))
            guard case .map(let features)? = r[string: "features"] else { Issue.record("no features"); continue }
            for (k, name) in names.enumerated() {
                let reading = features[string: name]
                guard let b = expected.bits[k] else { #expect(reading == nil, "event \(i) \(name)"); continue }
                guard case .map(let f)? = reading, let bits = Self.double(f[string: "bits"]) else { Issue.record("event \(i): no \(name)"); continue }
                #expect(Self.close(bits, b), "event \(i) \(name): \(bits) vs \(b)")
                if f[string: "known"] == .bool(true) { known += 1 }
            }
            let level = score >= 6 ? "high" : score >= 3 ? "medium" : "low"
            #expect(r[string: "level"] == .string(level))
            if abs(score) > 0.5 { nonzero += 1 }
        }
        // The stream exercises the formula: scores away from 0 and both kinds of values.
        #expect(nonzero > 100 && known > 200)
    }

    @Test(arguments: 0..<4)
    func aRestoredStateScoresExactlyAsTheUninterruptedRun(seed: Int) throws {
        let set = try loadSet(Self.policy(capacity: 2, populationCapacity: 3))
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var straight = PartitionState(policySet: set)
        var restarted = PartitionState(policySet: set)
        var rng = SeededRandom(seed: UInt64(seed) &+ 5)
        for (i, l) in Self.stream(seed: UInt64(seed) &+ 99, count: 300).enumerated() {
            let e = Self.uebaEvent(l)
            let x = engine.process(e, coordinates: "t/0/\(i)", state: &straight)
            if rng.int(8) == 0 { restarted = try PartitionState(restoring: restarted.serialized(), policySet: set) }
            let y = engine.process(e, coordinates: "t/0/\(i)", state: &restarted)
            #expect(x == y, "event \(i)")
            #expect(restarted.serialized() == straight.serialized(), "event \(i): the states differ")
            // The population key is queued for the sweep once, like every key: queued on
            // every login it would pile up one entry per login of the window (90 days).
            #expect(straight.sweepQueueCount.map { $0 == straight.liveKeyCount } ?? true, "event \(i): \(straight.sweepQueueCount ?? 0) queued, \(straight.liveKeyCount) live")
        }
    }

    @Test func aNewUserScoresZeroAndEachNewValueCostsTheLogOfTheHistory() throws {
        // A half-life of ten years: decay is negligible within these minutes.
        let set = try loadSet(Self.policy(halfLife: "3650d"))
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        let t0: Int64 = 1_767_225_600_000
        func login(_ user: String, _ i: Int64, ip: String, device: String, ua: String = "agent") -> ValueMap? {
            Self.returns(engine.process(Self.uebaEvent(Login(user: user, t: t0 + i * 60_000, features: [ip, Self.net(ip), device, ua], success: true)),
                                        coordinates: "t/0/\(i)", state: &state))
        }
        let first = try #require(login("alice", 0, ip: "203.0.113.7", device: "d1"))
        #expect(first[string: "score"] == .double(0) && first[string: "level"] == .string("low") && first[string: "logins"] == .double(0))
        for i in 1...2 { _ = login("alice", Int64(i), ip: "203.0.113.7", device: "d1") }
        // Three logins, α = 1.5: a new value's pᵤ = α·pₚ/(3 + α), so it costs log₂(4.5/1.5).
        let stranger = try #require(login("alice", 3, ip: "192.0.2.99", device: "d9", ua: "other agent"))
        let score = try #require(Self.double(stranger[string: "score"]))
        #expect(abs(score - 4 * log2(4.5 / 1.5)) < 1e-5, "\(score)")
        #expect(stranger[string: "level"] == .string("high"))
        #expect(stranger[string: "newFeatures"] == .list([.string("ip"), .string("net"), .string("device"), .string("ua")]))
        // Back home: every value known, and rarer in the population than for alice: negative.
        _ = login("bob", 4, ip: "198.51.100.1", device: "d2")
        let home = try #require(login("alice", 5, ip: "203.0.113.7", device: "d1"))
        #expect((Self.double(home[string: "score"]) ?? 0) < 0)
        #expect(home[string: "newFeatures"] == .list([]))
    }

    @Test func atCapacityTheLightestValueGoesAndIsThenUnknown() throws {
        let set = try loadSet(Self.policy(halfLife: "3650d", capacity: 2))
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        let t0: Int64 = 1_767_225_600_000
        var i: Int64 = 0
        func login(device: String) -> ValueMap? {
            i += 1
            return Self.returns(engine.process(Self.uebaEvent(Login(user: "carol", t: t0 + i * 60_000, features: ["203.0.113.7", "203.0.113.0/24", device, "agent"], success: true)),
                                               coordinates: "t/0/\(i)", state: &state))
        }
        for _ in 0..<3 { _ = login(device: "laptop") }
        _ = login(device: "phone")
        _ = login(device: "tablet")  // the third device: the phone, lightest, goes
        let phone = try #require(login(device: "phone"))
        #expect(phone[string: "newFeatures"] == .list([.string("device")]))
        let laptop = try #require(login(device: "laptop"))
        #expect(laptop[string: "newFeatures"] == .list([]))
    }

    @Test func riskStatisticsAreCheckedAtLoad() throws {
        func errors(_ stat: String) throws -> [String] {
            try loadErrors(["p.yaml": """
                policy: p
                statistics:
                  - name: r
                    key: event.originalIdentity
                    window: 30d
                \(stat.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
                judgment: "true"
                """]).map(\.message)
        }
        #expect(try errors("aggregation: risk").contains { $0.contains("needs 'features'") })
        #expect(try errors("aggregation: risk\nvalue: event.ip\nfeatures: {ip: event.ip}").contains { $0.contains("takes 'features', not 'value'") })
        #expect(try errors("aggregation: count\nhalfLife: 2d").contains { $0.contains("belongs to a risk statistic") })
        #expect(try errors("aggregation: risk\nfeatures: {ip: event.ip}\nlevels: {medium: 9, high: 2}").contains { $0.contains("medium must not exceed high") })
        #expect(try errors("aggregation: risk\nfeatures:\n  ip: ipPrefix(event.ip, 24)").contains { $0.contains("ipPrefix") })
        #expect(try errors("aggregation: risk\nfeatures: {ip: event.ip}").isEmpty)
    }

    @Test func ipPrefixNamesTheNetworkWhateverTheSpelling() throws {
        let set = try loadSet(Self.policy(extra: """
              v4: ipPrefix("203.0.113.77", 24, 48)
              v6: ipPrefix("2001:DB8:0::1:2", 24, 48)
              zero: ipPrefix("10.1.2.3", 0, 0)
            """))
        let engine = Engine(policySet: set, challengeKey: testChallengeKey)
        var state = PartitionState(policySet: set)
        let r = try #require(Self.returns(engine.process(event("dave", at: 1_767_225_600_000), coordinates: "t/0/0", state: &state)))
        #expect(r[string: "v4"] == .string("203.0.113.0/24"))
        #expect(r[string: "v6"] == .string("2001:db8:0:0:0:0:0:0/48"))
        #expect(r[string: "zero"] == .string("0.0.0.0/0"))
    }
}
