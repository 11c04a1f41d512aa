import CAMFACore
import Testing

@testable import CAMFASimulator

/// 2026-01-05 09:00:00 UTC.
let testStart: Int64 = 1_767_603_600_000

func generate(_ config: SimulatorConfiguration, count: Int) -> [SimulatedEvent] {
    var simulator = Simulator(config)
    var out: [SimulatedEvent] = []
    out.reserveCapacity(count)
    for _ in 0..<count { out.append(simulator.next()) }
    return out
}

/// A slow rate, so that episode windows (2 and 10 minutes of event time) span a modest
/// number of events, and enough events for dozens of episodes of every kind.
let propertySample: [SimulatedEvent] = generate(
    SimulatorConfiguration(seed: 20_260_105, users: 800, startTime: testStart, eventsPerSecond: 40), count: 150_000)

/// The sample without its last 15 minutes of event time, so that every episode judged
/// from it has all its events in the sample.
let completeHorizon: Int64 = propertySample.last!.event.requestDate - 15 * 60_000

extension UEBAEvent {
    var deviceId: String? { custom[string: "deviceId"].flatMap(stringValue) }
    var sessionId: String? { custom[string: "sessionId"].flatMap(stringValue) }
    var userGroups: [String] {
        guard case .list(let items)? = custom[string: "userGroups"] else { return [] }
        return items.compactMap(stringValue)
    }
    var isLogin: Bool { behaviorType == "login" }
}

func stringValue(_ v: Value) -> String? {
    if case .string(let s) = v { return s }
    return nil
}

/// Every field, in a fixed order, for byte-for-byte comparison of runs.
func render(_ e: UEBAEvent) -> String {
    let seed: [String?] = [
        e.appId, String(e.requestDate), e.ip, e.city, e.province, e.country, e.ua, e.deviceType, e.systemType,
        e.browserType, e.originalIdentity, e.behaviorType, e.behaviorResult, e.resourcesType, e.actionType, e.loginType,
    ]
    let custom = e.custom.entries.map { "\(render($0.0))=\(render($0.1))" }
    return seed.map { $0 ?? "∅" }.joined(separator: "|") + "|" + custom.joined(separator: ",")
}

func render(_ v: Value) -> String {
    switch v {
    case .string(let s): return "\"\(s)\""
    case .int(let i): return String(i)
    case .bool(let b): return String(b)
    case .list(let items): return "[" + items.map(render).joined(separator: ",") + "]"
    case .null: return "null"
    default: return "\(v)"
    }
}

func octets(_ ip: String) -> [Int] { ip.split(separator: ".").compactMap { Int($0) } }

func inNetwork(_ ip: String?, _ a: Int, _ b: Int) -> Bool {
    guard let ip else { return false }
    let o = octets(ip)
    return o.count == 4 && o[0] == a && o[1] == b
}

/// What MaxMind's GeoIP2-City-Test database answers for the ranges the simulator uses,
/// transcribed from its source JSON; stands in for enrichment when an event carries no
/// city.
func testDatabaseCity(_ ip: String) -> String? {
    let o = octets(ip)
    guard o.count == 4 else { return nil }
    switch (o[0], o[1], o[2], o[3]) {
    case (81, 2, 69, 142...143), (81, 2, 69, 144...159), (81, 2, 69, 160...191), (81, 2, 69, 192...207): return "London"
    case (2, 125, 160, 216...223): return "Boxford"
    case (89, 160, 20, 112...255): return "Linköping"
    case (216, 160, 83, 56...63): return "Milton"
    case (175, 16, 199, _): return "Changchun"
    default: return nil
    }
}

func cityOf(_ e: UEBAEvent) -> String? { e.city ?? e.ip.flatMap(testDatabaseCity) }
