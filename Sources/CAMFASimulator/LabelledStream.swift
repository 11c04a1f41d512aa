import CAMFACore

/// A month of logins with ground truth (issue 23): what adaptive MFA is judged on. The
/// population follows the published description of the RBA login dataset (Wiefling et
/// al., 2022): most logins come from a few stable contexts per user (home, office, a
/// phone on its carrier), legitimate novelty is common (trips, new phones, browser
/// updates, typos), and attacks are rare and come in the shapes commercial systems report:
/// credential stuffing, password spraying, targeted takeovers with the right password,
/// and takeovers through a VPN or hosting exit in the victim's own country.
///
/// Every login carries the city the producing service located it in (city, province,
/// country). VPN takeovers exit in the victim's city, half of them through an exit that
/// anonymous-IP databases list (`Catalog.listedVPNPrefix`, so the test databases flag it).
///
/// Every login gets a label; `(user, requestDate)` is unique, which is what
/// `DetectionReport` matches decisions by. Deterministic in the configuration.
public struct LabelledStream: Sendable {
    public struct Configuration: Sendable {
        public var seed: UInt64
        public var users: Int
        public var days: Int
        /// Epoch ms of the first day's midnight (UTC).
        public var startTime: Int64
        /// Share of users who work at the office on weekdays (the rest log in from home).
        public var officeShare: Double
        /// Per user and month: a trip, a new phone, a browser update.
        public var travelShare: Double
        public var newDeviceShare: Double
        public var browserUpgradeShare: Double
        /// Chance that a login is preceded by a mistyped password.
        public var typoRate: Double
        /// Targeted and VPN takeovers, per 1,000 users and month.
        public var targetedPerThousand: Double
        public var vpnPerThousand: Double
        /// Stuffing and spraying campaigns in the month.
        public var stuffingCampaigns: Int
        public var sprayingCampaigns: Int
        /// Share of VPN takeovers whose exit an anonymous-IP database lists (a commercial
        /// VPN); the rest come through an exit no list knows, where only the score helps.
        public var listedExitShare: Double

        public init(seed: UInt64, users: Int = 1_500, days: Int = 30, startTime: Int64 = 1_767_225_600_000) {
            self.seed = seed
            self.users = users
            self.days = days
            self.startTime = startTime
            officeShare = 0.7
            travelShare = 0.08
            newDeviceShare = 0.1
            browserUpgradeShare = 0.2
            typoRate = 0.03
            targetedPerThousand = 8
            vpnPerThousand = 4
            stuffingCampaigns = 3
            sprayingCampaigns = 2
            listedExitShare = 0.5
        }
    }

    /// Population mixes, so that a policy set is not judged (or tuned) on one kind of
    /// workforce: `office` (the default), `remote` (few office logins, more new devices)
    /// and `travelling` (many trips and browser updates).
    public static let mixes = ["office", "remote", "travelling"]

    /// The configuration with the mix `name` applied; nil for an unknown name.
    public static func configuration(seed: UInt64, users: Int, days: Int, startTime: Int64, mix name: String) -> Configuration? {
        var c = Configuration(seed: seed, users: users, days: days, startTime: startTime)
        switch name {
        case "office": break
        case "remote":
            c.officeShare = 0.1
            c.newDeviceShare = 0.15
        case "travelling":
            c.officeShare = 0.5
            c.travelShare = 0.3
            c.browserUpgradeShare = 0.3
        default: return nil
        }
        return c
    }

    public struct Login: Sendable {
        public var event: UEBAEvent
        public var label: DetectionReport.Label
    }

    public let logins: [Login]

    static let day: Int64 = 86_400_000
    static let hour: Int64 = 3_600_000

    public init(_ c: Configuration) {
        var rng = Xoshiro256(seed: c.seed)
        var out: [Login] = []
        var deviceCounter: UInt64 = 0
        func newDevice() -> String {
            deviceCounter += 1
            return Format.identifier(UInt8(ascii: "d"), IdentifierMixer(key: c.seed).mix(deviceCounter))
        }
        // `city`: where the producing service located the login, as the seed's events carry it.
        func login(_ user: String, _ t: Int64, ip: UInt32, city: Int, agent: String, device: String, app: String, success: Bool,
                   behaviour: String, attack: Bool) {
            var e = UEBAEvent(appId: app, requestDate: t, ip: Format.ipv4(ip), originalIdentity: user,
                              behaviorType: "login", behaviorResult: success ? "success" : "failure")
            e.city = Catalog.cityNames[city]
            e.province = Catalog.cityProvinces[city]
            e.country = Catalog.cityCountries[city]
            e.ua = agent
            e.custom = ValueMap([("deviceId", .string(device))])
            out.append(Login(event: e, label: DetectionReport.Label(user: user, requestDate: t, behaviour: behaviour,
                                                                     attack: attack, success: success)))
        }

        // The population.
        struct Person {
            var id: String
            var home: Int
            var homeAddress: UInt32
            var office: UInt32?
            var desktop: (ua: String, device: String)
            var phone: (ua: String, device: String)?
            var app: String
        }
        var people: [Person] = []
        for u in 0..<c.users {
            let home = Catalog.cityWeights.draw(&rng)
            let p = Catalog.cities[home].prefix
            let desktop = Catalog.agentStrings[Catalog.desktopAgents[rng.below(Catalog.desktopAgents.count)]]
            let phone = rng.chance(0.5) ? (Catalog.agentStrings[Catalog.mobileAgents[rng.below(Catalog.mobileAgents.count)]], newDevice()) : nil
            people.append(Person(
                id: Format.user(u), home: home, homeAddress: Catalog.host((p.0, p.1), rng.below(Catalog.hostsPerPrefix)),
                office: rng.chance(c.officeShare) ? Catalog.host(Catalog.officePrefix, u) : nil,
                desktop: (desktop, newDevice()), phone: phone, app: Catalog.appIds[rng.below(Catalog.appIds.count)]))
        }

        // Legitimate logins, with the novelty that real users bring.
        for (u, person) in people.enumerated() {
            var me = person
            let trip = rng.chance(c.travelShare) ? (start: rng.below(c.days - 6), length: 2 + rng.below(5),
                                                   city: Self.farCity(from: me.home, &rng)) : nil
            let newPhoneDay = rng.chance(c.newDeviceShare) ? 1 + rng.below(c.days - 1) : nil
            let upgradeDay = rng.chance(c.browserUpgradeShare) ? 1 + rng.below(c.days - 1) : nil
            var upgraded = false, newPhoneUsed = false
            let perDay = 0.5 + 2.5 * rng.unit()
            for d in 0..<c.days {
                let weekday = d % 7 < 5
                if d == newPhoneDay { me.phone = (Catalog.agentStrings[Catalog.mobileAgents[rng.below(Catalog.mobileAgents.count)]], newDevice()) }
                var n = Int(perDay) + (rng.chance(perDay - Double(Int(perDay))) ? 1 : 0)
                if !weekday { n = rng.chance(0.4) ? 1 : 0 }
                for _ in 0..<n {
                    let t = c.startTime + Int64(d) * Self.day + 7 * Self.hour + Int64(rng.below(Int(14 * Self.hour)))
                    var behaviour: String
                    var address: UInt32
                    var city = me.home
                    var agent = me.desktop.ua, device = me.desktop.device
                    var onDesktop = true
                    if let trip, d >= trip.start, d < trip.start + trip.length {
                        behaviour = "legit.travel"
                        address = Catalog.roamingHost(city: trip.city, u)
                        city = trip.city
                    } else if let phone = me.phone, rng.chance(0.25) {
                        behaviour = "legit.mobile"
                        address = Catalog.roamingHost(city: me.home, rng.below(Catalog.hostsPerPrefix))
                        (agent, device) = phone
                        onDesktop = false
                        if d >= newPhoneDay ?? Int.max, !newPhoneUsed { behaviour = "legit.newDevice"; newPhoneUsed = true }
                    } else if weekday, let office = me.office {
                        behaviour = "legit.office"
                        address = office
                    } else {
                        behaviour = "legit.home"
                        address = me.homeAddress
                    }
                    // A browser update: Chrome 120 → 122 on the desktop, from that day on.
                    if d >= upgradeDay ?? Int.max, onDesktop, agent.contains("Chrome/120.0.0.0") {
                        agent = agent.replacing("Chrome/120.0.0.0", with: "Chrome/122.0.0.0")
                        me.desktop.ua = agent
                        if !upgraded { behaviour = "legit.browserUpgrade"; upgraded = true }
                    }
                    let ua = agent
                    if rng.chance(c.typoRate) {
                        login(me.id, t - Int64(5_000 + rng.below(25_000)), ip: address, city: city, agent: ua, device: device, app: me.app,
                              success: false, behaviour: "legit.typo", attack: false)
                    }
                    login(me.id, t, ip: address, city: city, agent: ua, device: device, app: me.app, success: true, behaviour: behaviour, attack: false)
                }
            }
        }

        // Targeted takeovers: the right password, from elsewhere, on the attacker's device.
        let span = Int(Int64(c.days) * Self.day)
        func victim() -> Person { people[rng.below(people.count)] }
        for _ in 0..<Self.count(per: c.targetedPerThousand, c.users, &rng) {
            let v = victim()
            let city = Self.farCity(from: v.home, &rng)
            login(v.id, c.startTime + Int64(rng.below(span)), ip: Catalog.roamingHost(city: city, 60_000 + rng.below(5_000)), city: city,
                  agent: Catalog.agentStrings[Catalog.desktopAgents[rng.below(Catalog.desktopAgents.count)]], device: newDevice(),
                  app: v.app, success: true, behaviour: "ato.targeted", attack: true)
        }
        // Takeovers through a VPN or hosting exit in the victim's city: the location is not
        // given away.
        for _ in 0..<Self.count(per: c.vpnPerThousand, c.users, &rng) {
            let v = victim()
            let prefix = rng.chance(c.listedExitShare) ? Catalog.listedVPNPrefix
                : Catalog.attackPrefixes[rng.below(Catalog.attackPrefixes.count)]
            login(v.id, c.startTime + Int64(rng.below(span)), ip: Catalog.host(prefix, rng.below(Catalog.hostsPerPrefix)), city: v.home,
                  agent: v.desktop.ua, device: newDevice(), app: v.app,
                  success: true, behaviour: "ato.vpn", attack: true)
        }
        // Credential stuffing: one exit, a leaked list, minutes; a few pairs are valid.
        for _ in 0..<c.stuffingCampaigns {
            let ip = Catalog.host(Catalog.attackPrefixes[0], rng.below(Catalog.hostsPerPrefix))
            var t = c.startTime + Int64(rng.below(span))
            let tool = Catalog.toolAgents[rng.below(Catalog.toolAgents.count)]
            let city = Catalog.cityWeights.draw(&rng)
            for _ in 0..<(80 + rng.below(120)) {
                t += Int64(1_000 + rng.below(4_000))
                let v = victim()
                login(v.id, t, ip: ip, city: city, agent: tool, device: newDevice(), app: v.app, success: rng.chance(0.02),
                      behaviour: "ato.stuffing", attack: true)
            }
        }
        // Password spraying: one exit, many users, one or two common passwords each, slow.
        for _ in 0..<c.sprayingCampaigns {
            let ip = Catalog.host(Catalog.attackPrefixes[1], rng.below(Catalog.hostsPerPrefix))
            var t = c.startTime + Int64(rng.below(span))
            let city = Catalog.cityWeights.draw(&rng)
            for _ in 0..<(30 + rng.below(50)) {
                let v = victim()
                for _ in 0..<(1 + rng.below(2)) {
                    t += Int64(20_000 + rng.below(100_000))
                    login(v.id, t, ip: ip, city: city, agent: Catalog.toolAgents[0], device: newDevice(), app: v.app, success: rng.chance(0.01),
                          behaviour: "ato.spraying", attack: true)
                }
            }
        }

        // Event time order; a user's two logins never share a millisecond.
        out.sort { $0.event.requestDate != $1.event.requestDate ? $0.event.requestDate < $1.event.requestDate : $0.event.originalIdentity < $1.event.originalIdentity }
        var last: [String: Int64] = [:]
        for i in out.indices {
            let u = out[i].event.originalIdentity
            if let l = last[u], out[i].event.requestDate <= l {
                out[i].event.requestDate = l + 1
                out[i].label.requestDate = l + 1
            }
            last[u] = out[i].event.requestDate
        }
        logins = out
    }

    /// A city in another region.
    static func farCity(from home: Int, _ rng: inout Xoshiro256) -> Int {
        let region = Catalog.cities[home].region
        let far = Catalog.cities.indices.filter { Catalog.cities[$0].region != region }
        return far[rng.below(far.count)]
    }

    static func count(per thousand: Double, _ users: Int, _ rng: inout Xoshiro256) -> Int {
        let expected = thousand * Double(users) / 1_000
        return Int(expected) + (rng.chance(expected - Double(Int(expected))) ? 1 : 0)
    }
}
