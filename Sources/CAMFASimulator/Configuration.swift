import CAMFACore

public struct SimulatorConfiguration: Sendable {
    /// Everything the simulator emits is a function of the configuration; the seed is what
    /// makes two runs differ.
    public var seed: UInt64
    public var users: Int
    /// Epoch milliseconds of the first event. The simulator reads no clock.
    public var startTime: Int64
    /// Simulated event-time rate: `requestDate` advances by 1000 / rate ms on average.
    /// Episode timing (an ip burst within two minutes, a failure run within ten) is in
    /// event time and does not scale with this rate.
    public var eventsPerSecond: Double
    /// Fraction of the arrivals after warm-up that start an episode. An arrival whose
    /// episode finds no fitting user (all candidates busy, no far city left) becomes
    /// normal traffic instead.
    public var episodeRate: Double
    /// Normal logins each user makes before the first episode starts, so that travel,
    /// new-device and extranet episodes have a history to stand out from.
    public var warmupEventsPerUser: Int
    /// Relative frequency of the episode types; `.normal` and missing entries count as 0.
    public var scenarioWeights: [Scenario: Double]

    public init(
        seed: UInt64, users: Int = 1_000, startTime: Int64, eventsPerSecond: Double = 1_000,
        episodeRate: Double = 0.02, warmupEventsPerUser: Int = 3
    ) {
        self.seed = seed
        self.users = users
        self.startTime = startTime
        self.eventsPerSecond = eventsPerSecond
        self.episodeRate = episodeRate
        self.warmupEventsPerUser = warmupEventsPerUser
        var weights: [Scenario: Double] = [:]
        for s in Scenario.allCases where s != .normal { weights[s] = 1 }
        self.scenarioWeights = weights
    }
}

/// What produced an event: one of the scenario episodes of DESIGN.md, or everyday traffic.
public enum Scenario: String, Sendable, CaseIterable {
    /// A user with history logs in from a far city none of their events came from.
    case travel
    /// A login from a device id and browser the user never used.
    case newDevice
    /// A user who only ever logged in from the office LAN logs in from a public address.
    case extranet
    /// One address logs into five or more apps within two minutes, for different users.
    case ipBurst
    /// Six or more consecutive failed logins from one address within ten minutes, then
    /// another attempt.
    case failureRun
    /// An ordinary login by a member of the finance or HR group.
    case attributeRouting
    /// Inside a live session, an access from another device or another network.
    case sessionChange
    case normal
}

public struct SimulatedEvent: Sendable {
    public var event: UEBAEvent
    /// The episode that produced the event, `.normal` for everyday traffic.
    public var scenario: Scenario

    public init(event: UEBAEvent, scenario: Scenario) {
        self.event = event
        self.scenario = scenario
    }
}
