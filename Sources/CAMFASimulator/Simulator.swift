import CAMFACore

/// Deterministic synthetic UEBA traffic: normal sessions of a fixed population with the
/// DESIGN.md scenario episodes mixed in. A value type: copying a simulator forks it, and
/// both copies continue with identical output.
///
/// Time model: arrivals come at random gaps averaging 1000 / `eventsPerSecond` ms of
/// event time. An arrival is a normal event (a login, a step of a live session, a
/// logout) or, after warm-up and with probability `episodeRate`, the start of an
/// episode whose events are scheduled at their own event times and merged in order.
public struct Simulator: Sendable {
    public let configuration: SimulatorConfiguration

    /// CIDRs the generated addresses are drawn from, for configuring network zones.
    public static let officeNetwork = "10.20.0.0/16"
    public static let vpnNetwork = "10.99.0.0/16"
    public static let appIds: [String] = Catalog.appIds

    var rng: Xoshiro256
    var users: [User]
    /// Live normal sessions; a user's `sessionSlot` points here.
    var sessions: [Session] = []
    var queue = EventQueue()
    /// Event time of the next arrival in epoch nanoseconds (requestDate = clock / 10^6);
    /// nanoseconds so that rates far above 1000/s still advance time on average.
    var clock: Int64
    let twiceMeanGap: Double
    var warmup: Warmup?
    let episodeMix: [(scenario: Scenario, cumulative: Double)]
    /// Members of the finance or HR group, for attribute-routing episodes.
    let routedUsers: [Int32]
    var devices: DeviceIds
    let sessionIds: IdentifierMixer
    var sessionCounter: UInt64 = 0
    var attackCounter = 0

    public init(_ config: SimulatorConfiguration) {
        precondition(config.users >= 1, "the simulator needs at least one user")
        precondition(config.eventsPerSecond > 0 && config.eventsPerSecond.isFinite, "eventsPerSecond must be positive")
        precondition(config.episodeRate >= 0 && config.episodeRate <= 1, "episodeRate is a fraction")
        precondition(config.startTime >= 0 && config.startTime < 9_000_000_000_000, "startTime is epoch ms before 2255")
        configuration = config
        clock = config.startTime * 1_000_000
        // Separate streams for the population and the traffic keep a user's attributes
        // independent of how the traffic code draws numbers.
        var keys = SplitMix64(state: config.seed)
        var populationRng = Xoshiro256(seed: keys.next())
        rng = Xoshiro256(seed: keys.next())
        devices = DeviceIds(mixer: IdentifierMixer(key: keys.next()))
        sessionIds = IdentifierMixer(key: keys.next())
        let population = Population.make(count: config.users, rng: &populationRng, devices: &devices)
        users = population
        routedUsers = population.indices.compactMap { i in
            let g = Int(population[i].group)
            return g == Catalog.financeGroup || g == Catalog.hrGroup ? Int32(i) : nil
        }
        twiceMeanGap = 2 * 1e9 / config.eventsPerSecond
        var mix: [(Scenario, Double)] = []
        var total = 0.0
        for s in Scenario.allCases where s != .normal {
            let w = config.scenarioWeights[s] ?? 0
            if w > 0 {
                total += w
                mix.append((s, total))
            }
        }
        episodeMix = mix
        warmup = config.warmupEventsPerUser > 0 ? Warmup(users: config.users, rounds: config.warmupEventsPerUser) : nil
    }

    public mutating func next() -> SimulatedEvent {
        while true {
            if let due = queue.earliestTime, due <= clock { return queue.pop()! }
            let t = clock
            // Uniform on [0, 2·mean]: the configured mean rate without libm (exponential
            // gaps would need log(), whose last bit differs between platforms).
            clock += Int64(rng.unit() * twiceMeanGap)
            if warmup == nil, !episodeMix.isEmpty, rng.chance(configuration.episodeRate), startEpisode(at: t) {
                continue
            }
            if let event = normalArrival(at: t) { return event }
        }
    }

    // MARK: Normal traffic

    /// nil when every user probed is inside an episode and no session is live: the
    /// arrival is skipped rather than overlapping an episode.
    private mutating func normalArrival(at t: Int64) -> SimulatedEvent? {
        if warmup != nil, sessions.isEmpty || rng.chance(0.6) {
            if let u = warmup!.next(&rng) { return login(u, at: t) }
            warmup = nil
        }
        if sessions.isEmpty || rng.chance(0.22) {
            if let u = freeUser(at: t) { return login(u, at: t) }
            if sessions.isEmpty { return nil }
        }
        return step(slot: rng.below(sessions.count), at: t)
    }

    private mutating func freeUser(at t: Int64) -> Int? {
        let start = rng.below(users.count)
        for k in 0..<min(16, users.count) {
            let u = (start + k) % users.count
            if users[u].busyUntil <= t { return u }
        }
        return nil
    }

    private mutating func login(_ u: Int, at t: Int64) -> SimulatedEvent {
        endSession(of: u)
        let user = users[u]
        let (address, place) = user.usualLocation
        let secondary = user.hasSecondary && rng.chance(0.35)
        let device = Format.identifier(UInt8(ascii: "d"), secondary ? user.secondaryDevice : user.primaryDevice)
        let agent = secondary ? user.secondaryAgent : user.primaryAgent
        let app = user.app(rng.below(Int(user.appCount)))
        let loginType: UInt8 = rng.chance(0.85) ? user.loginType : 1
        let sessionId = newSessionId()
        // A mistyped password now and then: one failure, then the retry as the session's
        // next event. Never more than one, so no normal address forms a failure run.
        let failsFirst = loginType == 0 && rng.chance(0.03)
        let session = Session(
            user: Int32(u), id: sessionId, fields: user.fields(device: device, session: sessionId), ip: Format.ipv4(address),
            place: Int16(place), agent: agent, app: UInt8(app), loginType: loginType, remaining: Int8(rng.int(1...5)),
            awaitingRetry: failsFirst, mfaFirst: rng.chance(0.05))
        users[u].sessionSlot = Int32(sessions.count)
        sessions.append(session)
        noteLogin(u, address: address, place: place)
        if failsFirst {
            return Self.normal(Self.event(
                user.identity, at: t, app: app, ip: session.ip, place: place, agent: Catalog.agentStrings[Int(agent)],
                behavior: "login", result: "failure", loginType: "password", fields: user.fields(device: device, session: nil)))
        }
        return Self.normal(Self.loginEvent(session, user.identity, at: t))
    }

    private mutating func step(slot: Int, at t: Int64) -> SimulatedEvent {
        let s = sessions[slot]
        let u = Int(s.user)
        if s.awaitingRetry {
            sessions[slot].awaitingRetry = false
            return Self.normal(Self.loginEvent(s, users[u].identity, at: t))
        }
        let agent = Catalog.agentStrings[Int(s.agent)]
        if s.remaining <= 0 {
            endSession(of: u)
            return Self.normal(Self.event(
                users[u].identity, at: t, app: Int(s.app), ip: s.ip, place: Int(s.place), agent: agent,
                behavior: "logout", result: "success", loginType: nil, fields: s.fields))
        }
        sessions[slot].remaining -= 1
        if s.mfaFirst {
            sessions[slot].mfaFirst = false
            return Self.normal(Self.event(
                users[u].identity, at: t, app: Int(s.app), ip: s.ip, place: Int(s.place), agent: agent,
                behavior: "mfa", result: "success", loginType: nil, fields: s.fields))
        }
        return Self.normal(accessEvent(
            u, at: t, app: Int(s.app), ip: s.ip, place: Int(s.place), agent: agent, fields: s.fields,
            denied: rng.chance(0.01)))
    }

    /// Drops the user's live session without a logout: sessions also just expire.
    mutating func endSession(of u: Int) {
        let slot = Int(users[u].sessionSlot)
        guard slot >= 0 else { return }
        let last = sessions.count - 1
        if slot != last {
            sessions.swapAt(slot, last)
            users[Int(sessions[slot].user)].sessionSlot = Int32(slot)
        }
        sessions.removeLast()
        users[u].sessionSlot = -1
    }

    // MARK: Shared helpers

    /// Record a login (emitted now or scheduled) in the user's history.
    mutating func noteLogin(_ u: Int, address: UInt32, place: Int) {
        users[u].logins += 1
        if place >= 0 { users[u].visitedCities |= 1 << UInt64(place) }
        if address >> 16 != UInt32(Catalog.officePrefix.0) << 8 | UInt32(Catalog.officePrefix.1) {
            users[u].onlyOfficeLogins = false
        }
    }

    mutating func newSessionId() -> String {
        sessionCounter += 1
        return Format.identifier(UInt8(ascii: "s"), sessionIds.mix(sessionCounter))
    }

    // Event building is static: a non-mutating method called from the mutating paths
    // would copy the whole simulator value first.
    static func event(
        _ identity: String, at t: Int64, app: Int, ip: String, place: Int, agent: String, behavior: String,
        result: String, loginType: String?, fields: ValueMap, action: (String, String)? = nil
    ) -> UEBAEvent {
        let carried = place >= 0
        return UEBAEvent(
            appId: Catalog.appIds[app], requestDate: t / 1_000_000, ip: ip,
            city: carried ? Catalog.cityNames[place] : nil, province: carried ? Catalog.cityProvinces[place] : nil,
            country: carried ? Catalog.cityCountries[place] : nil, ua: agent,
            originalIdentity: identity, behaviorType: behavior, behaviorResult: result,
            resourcesType: action?.0, actionType: action?.1, loginType: loginType, custom: fields)
    }

    private static func loginEvent(_ s: Session, _ identity: String, at t: Int64) -> UEBAEvent {
        event(
            identity, at: t, app: Int(s.app), ip: s.ip, place: Int(s.place), agent: Catalog.agentStrings[Int(s.agent)],
            behavior: "login", result: "success", loginType: Catalog.loginTypes[Int(s.loginType)], fields: s.fields)
    }

    mutating func accessEvent(
        _ u: Int, at t: Int64, app: Int, ip: String, place: Int, agent: String, fields: ValueMap, denied: Bool = false
    ) -> UEBAEvent {
        let actions = Catalog.apps[app].actions
        return Self.event(
            users[u].identity, at: t, app: app, ip: ip, place: place, agent: agent, behavior: "access",
            result: denied ? "failure" : "success", loginType: nil, fields: fields,
            action: actions[rng.below(actions.count)])
    }

    private static func normal(_ e: UEBAEvent) -> SimulatedEvent { SimulatedEvent(event: e, scenario: .normal) }
}

/// Rounds in which every user logs in once, in a fresh pseudo-random order per round
/// (an affine permutation of the user indexes, so no shuffled array is stored).
struct Warmup: Sendable {
    let users: Int
    let rounds: Int
    var round = 0
    var position = 0
    var stride = 1
    var offset = 0

    init(users: Int, rounds: Int) {
        self.users = users
        self.rounds = rounds
        // Forces a fresh permutation on the first call.
        position = users
        round = -1
    }

    mutating func next(_ rng: inout Xoshiro256) -> Int? {
        if position == users {
            round += 1
            guard round < rounds else { return nil }
            position = 0
            offset = rng.below(users)
            repeat { stride = 1 + rng.below(users) } while gcd(stride, users) != 1
        }
        defer { position += 1 }
        return (stride * position + offset) % users
    }

    private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}
