import CAMFACore
import Testing

@testable import CAMFASimulator

@Suite struct ScenarioTests {
    @Test func everyScenarioAppearsInTheFirst20kEventsAtDefaults() {
        let events = generate(SimulatorConfiguration(seed: 2026, startTime: testStart), count: 20_000)
        var counts: [Scenario: Int] = [:]
        for e in events { counts[e.scenario, default: 0] += 1 }
        for s in Scenario.allCases { #expect(counts[s, default: 0] > 0, "\(s) missing") }
    }

    @Test func noEpisodeStartsBeforeEveryUserHasItsWarmupLogins() {
        let users = 300
        let events = generate(SimulatorConfiguration(seed: 5, users: users, startTime: testStart, warmupEventsPerUser: 3), count: 20_000)
        guard let firstEpisode = events.firstIndex(where: { $0.scenario != .normal }) else {
            Issue.record("no episode at all")
            return
        }
        var logins: [String: Int] = [:]
        // Attempts, not successes: a mistyped password whose retry was overtaken by the
        // next round is history too.
        for e in events[..<firstEpisode] where e.event.isLogin {
            logins[e.event.originalIdentity, default: 0] += 1
        }
        #expect(logins.count == users)
        #expect(logins.values.allSatisfy { $0 >= 3 }, "fewest: \(logins.values.min() ?? 0)")
    }

    @Test func travelComesFromACityAndAddressTheUserNeverUsed() {
        var citiesByUser: [String: Set<String>] = [:]
        var ipsByUser: [String: Set<String>] = [:]
        var loginsByUser: [String: Int] = [:]
        var checked = 0
        for s in propertySample {
            let e = s.event
            let user = e.originalIdentity
            if s.scenario == .travel, e.isLogin {
                let city = cityOf(e)
                #expect(city != nil)
                #expect(!(citiesByUser[user] ?? []).contains(city ?? ""), "\(user) was in \(city ?? "?") before")
                #expect(!(ipsByUser[user] ?? []).contains(e.ip ?? ""), "\(user) used \(e.ip ?? "?") before")
                #expect(loginsByUser[user, default: 0] > 0, "\(user) travels without history")
                checked += 1
            }
            if let city = cityOf(e) { citiesByUser[user, default: []].insert(city) }
            if let ip = e.ip { ipsByUser[user, default: []].insert(ip) }
            if e.isLogin { loginsByUser[user, default: 0] += 1 }
        }
        #expect(checked >= 20)
    }

    @Test func travelGoesToAnotherCountry() {
        var homeCountry: [String: String] = [:]
        for s in propertySample where s.scenario == .normal {
            if let c = s.event.country, homeCountry[s.event.originalIdentity] == nil {
                homeCountry[s.event.originalIdentity] = c
            }
        }
        let travels = propertySample.filter { $0.scenario == .travel && $0.event.isLogin }
        #expect(!travels.isEmpty)
        for t in travels {
            guard let home = homeCountry[t.event.originalIdentity] else { continue }
            #expect(t.event.country != home)
        }
    }

    @Test func newDeviceUsesAnUnseenDeviceIdAndBrowser() {
        var devicesByUser: [String: Set<String>] = [:]
        var agentsByUser: [String: Set<String>] = [:]
        var checked = 0
        for s in propertySample {
            let e = s.event
            if s.scenario == .newDevice, e.isLogin {
                #expect(!(devicesByUser[e.originalIdentity] ?? []).contains(e.deviceId ?? ""))
                #expect(!(agentsByUser[e.originalIdentity] ?? []).contains(e.ua ?? ""))
                checked += 1
            }
            // Attacks use the victim's name, not their browser: leave them out.
            if s.scenario != .ipBurst, s.scenario != .failureRun {
                if let d = e.deviceId { devicesByUser[e.originalIdentity, default: []].insert(d) }
                if let ua = e.ua { agentsByUser[e.originalIdentity, default: []].insert(ua) }
            }
        }
        #expect(checked >= 20)
    }

    @Test func extranetUserHadOnlyOfficeLoginsBefore() {
        var loginIps: [String: [String]] = [:]
        var checked = 0
        for s in propertySample {
            let e = s.event
            guard e.isLogin else { continue }
            if s.scenario == .extranet {
                let earlier = loginIps[e.originalIdentity] ?? []
                #expect(!earlier.isEmpty)
                #expect(earlier.allSatisfy { inNetwork($0, 10, 20) }, "\(e.originalIdentity): \(earlier)")
                #expect(!inNetwork(e.ip, 10, 20) && !inNetwork(e.ip, 10, 99))
                checked += 1
            }
            loginIps[e.originalIdentity, default: []].append(e.ip ?? "")
        }
        #expect(checked >= 20)
    }

    @Test func ipBurstReachesFiveAppsWithinTwoMinutes() {
        let byIp = Dictionary(grouping: propertySample.filter { $0.event.ip != nil }, by: { $0.event.ip! })
        let burstIps = Set(propertySample.filter { $0.scenario == .ipBurst }.map { $0.event.ip! })
        var checked = 0
        for ip in burstIps.sorted() {
            let events = byIp[ip]!.map(\.event)
            guard events[0].requestDate < completeHorizon else { continue }
            #expect(byIp[ip]!.allSatisfy { $0.scenario == .ipBurst }, "\(ip) also carries other traffic")
            #expect(events.allSatisfy { $0.isLogin && $0.behaviorResult == "success" })
            var best = 0
            for (i, first) in events.enumerated() {
                let window = events[i...].prefix { $0.requestDate - first.requestDate < 120_000 }
                best = max(best, Set(window.map { $0.appId ?? "" }).count)
            }
            #expect(best >= 5, "\(ip): \(best) apps")
            #expect(Set(events.map(\.originalIdentity)).count >= 5)
            checked += 1
        }
        #expect(checked >= 20)
    }

    @Test func failureRunIsSixConsecutiveFailuresWithinTenMinutesThenAnAttempt() {
        let byIp = Dictionary(grouping: propertySample.filter { $0.event.ip != nil }, by: { $0.event.ip! })
        let runIps = Set(propertySample.filter { $0.scenario == .failureRun }.map { $0.event.ip! })
        var checked = 0
        for ip in runIps.sorted() {
            let events = byIp[ip]!.map(\.event)
            guard events[0].requestDate < completeHorizon else { continue }
            #expect(events.allSatisfy { $0.isLogin })
            let failures = events.prefix { $0.behaviorResult == "failure" }
            #expect(failures.count >= 6, "\(ip): \(failures.count) consecutive failures")
            if failures.count >= 6 {
                #expect(failures[failures.startIndex + 5].requestDate - events[0].requestDate <= 600_000)
            }
            // Whatever the run's length, another attempt follows it.
            #expect(events.count > 6)
            checked += 1
        }
        #expect(checked >= 20)
    }

    @Test func sessionChangeKeepsTheSessionIdButChangesDeviceOrAddress() {
        let events = propertySample.filter { $0.scenario == .sessionChange }
        let bySession = Dictionary(grouping: events.map(\.event), by: { $0.sessionId ?? "" })
        #expect(bySession[""] == nil, "a session-change event without sessionId")
        var checked = 0
        for (sid, session) in bySession where !sid.isEmpty && session[0].requestDate < completeHorizon {
            guard let login = session.first, login.isLogin else {
                Issue.record("session \(sid) does not start with its login")
                continue
            }
            #expect(Set(session.map(\.originalIdentity)).count == 1)
            let changed = session.dropFirst().filter { $0.deviceId != login.deviceId || $0.ip != login.ip }
            #expect(!changed.isEmpty, "session \(sid) never changes")
            #expect(changed.allSatisfy { $0.behaviorType == "access" })
            checked += 1
        }
        #expect(checked >= 20)
    }

    @Test func attributeRoutingLoginsBelongToFinanceOrHR() {
        let routed = propertySample.filter { $0.scenario == .attributeRouting && $0.event.isLogin }
        #expect(routed.count >= 20)
        for r in routed {
            #expect(r.event.userGroups.contains("finance") || r.event.userGroups.contains("hr"))
        }
    }

    @Test func financeAndHRAreAboutEightPercentEach() {
        var groups: [String: [String]] = [:]
        for s in generate(SimulatorConfiguration(seed: 11, users: 4_000, startTime: testStart), count: 40_000) {
            groups[s.event.originalIdentity] = s.event.userGroups
        }
        #expect(groups.count > 3_500)
        let finance = Double(groups.values.filter { $0.contains("finance") }.count) / Double(groups.count)
        let hr = Double(groups.values.filter { $0.contains("hr") }.count) / Double(groups.count)
        #expect(finance > 0.05 && finance < 0.11, "finance share \(finance)")
        #expect(hr > 0.05 && hr < 0.11, "hr share \(hr)")
    }

    @Test func weightsSelectTheEpisodeMix() {
        var config = SimulatorConfiguration(seed: 8, users: 200, startTime: testStart, episodeRate: 0.1)
        config.scenarioWeights = [.failureRun: 1]
        let only = Set(generate(config, count: 10_000).map(\.scenario))
        #expect(only == [.normal, .failureRun])

        config.episodeRate = 0
        #expect(Set(generate(config, count: 10_000).map(\.scenario)) == [.normal])
    }
}
