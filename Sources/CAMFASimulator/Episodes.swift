import CAMFACore

/// Episodes: each schedules all its events at once (the first at the arrival time) and
/// marks the users it speaks for as busy until its last event, so normal traffic never
/// interleaves a contradicting session of the same user.
extension Simulator {
    private static let second: Int64 = 1_000_000_000
    /// How many random users an episode looks at before giving up on its arrival.
    private static let candidateProbes = 8

    /// false when no suitable user was found; the arrival then becomes normal traffic.
    mutating func startEpisode(at t: Int64) -> Bool {
        let r = rng.unit() * episodeMix[episodeMix.count - 1].cumulative
        let scenario = episodeMix.first { r < $0.cumulative }?.scenario ?? episodeMix[episodeMix.count - 1].scenario
        switch scenario {
        case .travel: return travel(at: t)
        case .newDevice: return newDevice(at: t)
        case .extranet: return extranet(at: t)
        case .ipBurst: return ipBurst(at: t)
        case .failureRun: return failureRun(at: t)
        case .attributeRouting: return attributeRouting(at: t)
        case .sessionChange: return sessionChange(at: t)
        case .normal: return false
        }
    }

    private mutating func seconds(_ range: ClosedRange<Int>) -> Int64 {
        Int64(rng.int(range)) * Self.second
    }

    private mutating func candidate(at t: Int64, _ accept: (User) -> Bool) -> Int? {
        for _ in 0..<Self.candidateProbes {
            let u = rng.below(users.count)
            if users[u].busyUntil <= t, users[u].logins > 0, accept(users[u]) { return u }
        }
        return nil
    }

    private mutating func schedule(_ e: UEBAEvent, _ scenario: Scenario, at t: Int64) {
        queue.push(SimulatedEvent(event: e, scenario: scenario), at: t)
    }

    /// Login, one to three accesses, sometimes a logout: the shape of every episode that
    /// is one user's session. Returns the time of its last event.
    @discardableResult
    private mutating func scheduleSession(
        _ u: Int, at t: Int64, address: UInt32, place: Int, device: UInt64, agent: String, scenario: Scenario
    ) -> Int64 {
        endSession(of: u)
        let user = users[u]
        let app = user.app(rng.below(Int(user.appCount)))
        let ip = Format.ipv4(address)
        let custom = users[u].fields(device: Format.identifier(UInt8(ascii: "d"), device), session: newSessionId())
        let loginType = Catalog.loginTypes[Int(user.loginType)]
        schedule(Self.event(
            users[u].identity, at: t, app: app, ip: ip, place: place, agent: agent, behavior: "login", result: "success",
            loginType: loginType, fields: custom), scenario, at: t)
        var time = t
        for _ in 0..<rng.int(1...3) {
            time += seconds(5...60)
            schedule(accessEvent(u, at: time, app: app, ip: ip, place: place, agent: agent, fields: custom), scenario, at: time)
        }
        if rng.chance(0.5) {
            time += seconds(5...60)
            schedule(Self.event(
                users[u].identity, at: time, app: app, ip: ip, place: place, agent: agent, behavior: "logout", result: "success",
                loginType: nil, fields: custom), scenario, at: time)
        }
        noteLogin(u, address: address, place: place)
        users[u].busyUntil = time
        return time
    }

    /// A browser none of the user's events used (index into `Catalog.userAgents`), or,
    /// once they have used them all, one other than their usual two.
    private mutating func unfamiliarAgent(_ u: Int) -> Int {
        let user = users[u]
        let all: UInt32 = (1 << UInt32(Catalog.userAgents.count)) - 1
        let usual: UInt32 = 1 << UInt32(user.primaryAgent) | (user.hasSecondary ? 1 << UInt32(user.secondaryAgent) : 0)
        let excluded = user.usedAgents & all == all ? usual : user.usedAgents
        let start = rng.below(Catalog.userAgents.count)
        for k in 0..<Catalog.userAgents.count {
            let a = (start + k) % Catalog.userAgents.count
            if excluded & (1 << UInt32(a)) == 0 {
                users[u].usedAgents |= 1 << UInt32(a)
                return a
            }
        }
        preconditionFailure("a user cannot have used every agent as a usual one")
    }

    // MARK: Scenario 1: usual location

    private mutating func travel(at t: Int64) -> Bool {
        for _ in 0..<Self.candidateProbes {
            guard let u = candidate(at: t, { _ in true }) else { return false }
            let user = users[u]
            let homeRegion = Catalog.cities[Int(user.home)].region
            let start = rng.below(Catalog.cities.count)
            for k in 0..<Catalog.cities.count {
                let c = (start + k) % Catalog.cities.count
                guard Catalog.cities[c].region != homeRegion, user.visitedCities & (1 << UInt64(c)) == 0 else { continue }
                let device = users[u].device(secondary: rng.chance(0.4))
                // A hotel or roaming address of the destination: never one of the user's.
                let address = Catalog.roamingHost(city: c, rng.below(Catalog.hostsPerPrefix))
                scheduleSession(u, at: t, address: address, place: c, device: device.id, agent: device.agent, scenario: .travel)
                return true
            }
        }
        return false
    }

    // MARK: New device

    private mutating func newDevice(at t: Int64) -> Bool {
        guard let u = candidate(at: t, { _ in true }) else { return false }
        let device = devices.next()
        let agent = unfamiliarAgent(u)
        let (address, place) = users[u].usualLocation
        scheduleSession(u, at: t, address: address, place: place, device: device, agent: Catalog.agentStrings[agent], scenario: .newDevice)
        // Half the time it was the user's new phone or laptop and becomes a usual device.
        if rng.chance(0.5) {
            users[u].secondaryDevice = device
            users[u].secondaryAgent = UInt8(agent)
            users[u].hasSecondary = true
        }
        return true
    }

    // MARK: Scenario 2: intranet vs extranet

    private mutating func extranet(at t: Int64) -> Bool {
        guard let u = candidate(at: t, { $0.onlyOfficeLogins }) else { return false }
        let user = users[u]
        let device = users[u].device(secondary: rng.chance(0.5))
        scheduleSession(
            u, at: t, address: user.homeAddress, place: user.homeAddressNeedsGeoIP ? -1 : Int(user.home),
            device: device.id, agent: device.agent, scenario: .extranet)
        return true
    }

    // MARK: Scenario 4: IP velocity

    /// A fresh address of the attack ranges; the counter walks 130k addresses before
    /// repeating one, far more than the episodes alive at once.
    private mutating func attackAddress() -> UInt32 {
        let prefixes = Catalog.attackPrefixes
        let k = attackCounter
        attackCounter += 1
        return Catalog.host(prefixes[k % prefixes.count], k / prefixes.count)
    }

    private mutating func attackAgent() -> String {
        rng.chance(0.5)
            ? Catalog.toolAgents[rng.below(Catalog.toolAgents.count)]
            : Catalog.agentStrings[Catalog.desktopAgents[rng.below(Catalog.desktopAgents.count)]]
    }

    /// Distinct users while the population allows it.
    private mutating func victims(_ count: Int) -> [Int] {
        var chosen: [Int] = []
        chosen.reserveCapacity(count)
        while chosen.count < count {
            let u = rng.below(users.count)
            if users.count < count * 2 || !chosen.contains(u) { chosen.append(u) }
        }
        return chosen
    }

    /// Credential stuffing: one address, one tool, successful logins of different users
    /// into five to seven different apps within 90 s, then one more login from it.
    private mutating func ipBurst(at t: Int64) -> Bool {
        let appCount = rng.int(5...7)
        var apps = Array(0..<Catalog.apps.count)
        for i in 0..<appCount { apps.swapAt(i, i + rng.below(apps.count - i)) }
        let address = attackAddress()
        let ip = Format.ipv4(address)
        let agent = attackAgent()
        let device = Format.identifier(UInt8(ascii: "d"), devices.next())
        let accounts = victims(appCount + 1)
        var time = t
        for (k, u) in accounts.enumerated() {
            if k > 0 { time += k < appCount ? seconds(3...15) : seconds(5...20) }
            let app = k < appCount ? apps[k] : apps[rng.below(appCount)]
            schedule(Self.event(
                users[u].identity, at: time, app: app, ip: ip, place: -1, agent: agent, behavior: "login", result: "success",
                loginType: "password", fields: users[u].fields(device: device, session: newSessionId())), .ipBurst, at: time)
            noteLogin(u, address: address, place: -1)
        }
        return true
    }

    /// Brute force (one account) or password spraying (many): six to ten failures at
    /// most 40 s apart, then one more attempt that sometimes gets in. At most 7 minutes.
    private mutating func failureRun(at t: Int64) -> Bool {
        let failures = rng.int(6...10)
        let spraying = rng.chance(0.5)
        let target = rng.below(users.count)
        let address = attackAddress()
        let ip = Format.ipv4(address)
        let agent = attackAgent()
        let device = Format.identifier(UInt8(ascii: "d"), devices.next())
        let app = rng.below(Catalog.apps.count)
        var time = t
        for k in 0...failures {
            if k > 0 { time += k < failures ? seconds(1...40) : seconds(5...60) }
            let u = spraying ? rng.below(users.count) : target
            let succeeds = k == failures && rng.chance(0.4)
            schedule(Self.event(
                users[u].identity, at: time, app: app, ip: ip, place: -1, agent: agent, behavior: "login",
                result: succeeds ? "success" : "failure", loginType: "password",
                fields: users[u].fields(device: device, session: succeeds ? newSessionId() : nil)), .failureRun, at: time)
            noteLogin(u, address: address, place: -1)
        }
        return true
    }

    // MARK: Scenario 3: attribute routing

    private mutating func attributeRouting(at t: Int64) -> Bool {
        guard !routedUsers.isEmpty else { return false }
        for _ in 0..<Self.candidateProbes {
            let u = Int(routedUsers[rng.below(routedUsers.count)])
            guard users[u].busyUntil <= t else { continue }
            let (address, place) = users[u].usualLocation
            let device = users[u].device(secondary: rng.chance(0.35))
            scheduleSession(u, at: t, address: address, place: place, device: device.id, agent: device.agent, scenario: .attributeRouting)
            return true
        }
        return false
    }

    // MARK: Scenario 5: continuous (mid-session change)

    /// A session from the usual place and device, then accesses under the same sessionId
    /// from another device, another network, or both (a stolen session cookie).
    private mutating func sessionChange(at t: Int64) -> Bool {
        guard let u = candidate(at: t, { _ in true }) else { return false }
        endSession(of: u)
        let user = users[u]
        let (address, place) = users[u].usualLocation
        let device = users[u].device(secondary: false)
        let app = user.app(rng.below(Int(user.appCount)))
        let sessionId = newSessionId()
        let ip = Format.ipv4(address)
        let custom = users[u].fields(device: Format.identifier(UInt8(ascii: "d"), device.id), session: sessionId)
        schedule(Self.event(
            users[u].identity, at: t, app: app, ip: ip, place: place, agent: device.agent, behavior: "login", result: "success",
            loginType: Catalog.loginTypes[Int(user.loginType)], fields: custom), .sessionChange, at: t)
        noteLogin(u, address: address, place: place)
        var time = t
        for _ in 0..<rng.int(1...2) {
            time += seconds(5...60)
            schedule(accessEvent(u, at: time, app: app, ip: ip, place: place, agent: device.agent, fields: custom), .sessionChange, at: time)
        }

        let variant = rng.below(3)  // 0: device, 1: network, 2: both
        var changedFields = custom
        var changedAgent = device.agent
        if variant != 1 {
            changedFields = users[u].fields(device: Format.identifier(UInt8(ascii: "d"), devices.next()), session: sessionId)
            changedAgent = Catalog.agentStrings[unfamiliarAgent(u)]
        }
        // A mobile-carrier address of the home city: a public network, unlike any of
        // the user's login addresses.
        let changedIp = variant != 0 ? Format.ipv4(Catalog.roamingHost(city: Int(user.home), rng.below(Catalog.hostsPerPrefix))) : ip
        let changedPlace = variant != 0 ? Int(user.home) : place
        for _ in 0..<rng.int(1...2) {
            time += seconds(5...120)
            schedule(accessEvent(
                u, at: time, app: app, ip: changedIp, place: changedPlace, agent: changedAgent, fields: changedFields),
                .sessionChange, at: time)
        }
        users[u].busyUntil = time
        return true
    }
}
