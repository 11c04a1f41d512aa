import CAMFACore
import Testing

@testable import CAMFASimulator

@Suite struct TrafficTests {
    @Test func requestDateNeverGoesBackAndStartsAtTheStartTime() {
        let events = generate(SimulatorConfiguration(seed: 3, startTime: testStart), count: 50_000)
        #expect(events[0].event.requestDate == testStart)
        for i in 1..<events.count {
            #expect(events[i].event.requestDate >= events[i - 1].event.requestDate, "event \(i)")
            if events[i].event.requestDate < events[i - 1].event.requestDate { return }
        }
    }

    @Test(arguments: [1_000.0, 25.0])
    func eventTimeAdvancesAtTheConfiguredRate(rate: Double) {
        let count = 60_000
        let events = generate(SimulatorConfiguration(seed: 4, startTime: testStart, eventsPerSecond: rate), count: count)
        let span = Double(events[count - 1].event.requestDate - events[0].event.requestDate)
        let observed = Double(count) / (span / 1_000)
        // Episode events come on top of the arrivals, so the rate may exceed the setting
        // by a few percent.
        #expect(observed > rate * 0.95 && observed < rate * 1.15, "observed \(observed)/s")
    }

    @Test func fieldsUseTheSharedVocabulary() {
        let apps: Set<String> = ["portal", "mail", "crm", "wiki", "finance-app", "hr-app", "devops", "chat"]
        for s in propertySample.prefix(40_000) {
            let e = s.event
            #expect(apps.contains(e.appId ?? ""))
            #expect(["login", "access", "logout", "mfa"].contains(e.behaviorType ?? ""))
            #expect(["success", "failure"].contains(e.behaviorResult ?? ""))
            #expect(e.originalIdentity.hasPrefix("u") && e.originalIdentity.count == 7 && Int(e.originalIdentity.dropFirst()) != nil)
            #expect(e.deviceId.map { $0.hasPrefix("d-") && UInt64($0.dropFirst(2), radix: 16) != nil } == true)
            #expect(e.ip.map { octets($0).count == 4 } == true)
            #expect(e.ua?.isEmpty == false)
            #expect(!(e.custom[string: "department"].flatMap(stringValue) ?? "").isEmpty)
            #expect(!e.userGroups.isEmpty)
            if e.isLogin {
                #expect(["password", "sso", "passkey"].contains(e.loginType ?? ""))
                #expect((e.sessionId != nil) == (e.behaviorResult == "success"))
            } else {
                #expect(e.loginType == nil)
                #expect(e.sessionId != nil)
            }
            if e.behaviorType == "access" {
                #expect(e.resourcesType != nil && e.actionType != nil)
            }
        }
    }

    @Test func mostEventsCarryTheirCityAndSomeLeaveItToGeoIP() {
        let events = propertySample.map(\.event)
        let carried = events.filter { $0.city != nil }
        #expect(Double(carried.count) / Double(events.count) > 0.8)
        #expect(carried.allSatisfy { $0.province != nil && $0.country?.count == 2 })
        let resolvable = events.filter { $0.city == nil && $0.ip.flatMap(testDatabaseCity) != nil }
        #expect(resolvable.count > 100)
        #expect(Set(resolvable.compactMap { testDatabaseCity($0.ip!) }).count >= 3)
    }

    @Test func normalLoginsComeFromHomeOnUsualDevices() {
        var homeCity: [String: String] = [:]
        var devices: [String: Set<String>] = [:]
        var officeLogins = 0
        var normalLogins = 0
        for s in propertySample where s.scenario == .normal && s.event.isLogin {
            let e = s.event
            normalLogins += 1
            if inNetwork(e.ip, 10, 20) { officeLogins += 1 }
            if let city = cityOf(e) {
                if let known = homeCity[e.originalIdentity] { #expect(known == city) } else { homeCity[e.originalIdentity] = city }
            }
            devices[e.originalIdentity, default: []].insert(e.deviceId!)
        }
        #expect(Double(officeLogins) / Double(normalLogins) > 0.5)
        // New devices adopted after a new-device episode add at most a few.
        #expect(devices.values.allSatisfy { $0.count <= 6 })
        #expect(Double(devices.values.filter { $0.count <= 2 }.count) / Double(devices.count) > 0.8)
    }

    /// The policies' thresholds must be reached by episodes only: ordinary traffic from one
    /// address never reaches five apps in two minutes or three failures in a row.
    @Test func normalTrafficStaysBelowTheVelocityThresholds() {
        let normal = propertySample.filter { $0.scenario == .normal && $0.event.isLogin }.map(\.event)
        let byIp = Dictionary(grouping: normal, by: { $0.ip! })
        for (ip, events) in byIp {
            var run = 0
            var longest = 0
            for e in events {
                run = e.behaviorResult == "failure" ? run + 1 : 0
                longest = max(longest, run)
            }
            #expect(longest < 3, "\(ip): \(longest) failures in a row")
            var apps = 0
            for (i, first) in events.enumerated() {
                let window = events[i...].prefix { $0.requestDate - first.requestDate < 120_000 }
                apps = max(apps, Set(window.map { $0.appId! }).count)
            }
            #expect(apps < 5, "\(ip): \(apps) apps within 2 minutes")
        }
    }

    @Test func sessionsStartWithALoginAndKeepTheirContext() {
        var logins: [String: UEBAEvent] = [:]
        for s in propertySample where s.scenario == .normal {
            let e = s.event
            guard let sid = e.sessionId else { continue }
            if e.isLogin {
                #expect(logins[sid] == nil, "session \(sid) logged in twice")
                logins[sid] = e
            } else if let login = logins[sid] {
                #expect(login.originalIdentity == e.originalIdentity && login.deviceId == e.deviceId && login.ip == e.ip)
                #expect(login.appId == e.appId)
            } else {
                Issue.record("\(e.behaviorType ?? "?") in session \(sid) before its login")
            }
        }
        #expect(logins.count > 1_000)
    }
}

@Suite struct EdgeTests {
    /// Episodes that need several users, or a user who is not busy, must neither hang nor
    /// break the ordering when the population is tiny.
    @Test(arguments: [1, 2, 7])
    func tinyPopulationsStillProduceOrderedTraffic(users: Int) {
        let events = generate(SimulatorConfiguration(seed: 12, users: users, startTime: testStart, episodeRate: 0.2), count: 5_000)
        #expect(Set(events.map(\.event.originalIdentity)).count == users)
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.event.requestDate <= $1.event.requestDate })
        #expect(events.contains { $0.scenario != .normal })
    }

    /// While a one-user episode runs, the same user has no normal login: otherwise a
    /// travel login would sit between two office logins seconds apart.
    @Test func singleUserEpisodesAreNotInterleavedWithTheirOwnNormalLogins() {
        let kinds: Set<Scenario> = [.travel, .newDevice, .extranet, .attributeRouting, .sessionChange]
        var open: [String: (scenario: Scenario, session: String)] = [:]
        var lastEventOfSession: [String: Int] = [:]
        for (i, s) in propertySample.enumerated() where kinds.contains(s.scenario) {
            lastEventOfSession[s.event.sessionId!] = i
        }
        var checked = 0
        for (i, s) in propertySample.enumerated() {
            let user = s.event.originalIdentity
            if let episode = open[user], let end = lastEventOfSession[episode.session], i > end {
                open[user] = nil
            }
            if kinds.contains(s.scenario), s.event.isLogin {
                open[user] = (s.scenario, s.event.sessionId!)
                checked += 1
            } else if s.scenario == .normal, s.event.isLogin, let episode = open[user] {
                Issue.record("normal login of \(user) inside its \(episode.scenario) episode")
            }
        }
        #expect(checked >= 100)
    }
}
