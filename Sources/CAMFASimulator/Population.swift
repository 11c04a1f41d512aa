import CAMFACore

/// Where a user normally works from. Office users never log in from outside 10.20/16
/// in normal traffic, which is what lets an extranet episode stand out.
enum WorkStyle: UInt8, Sendable {
    case office, vpn, remote
}

/// One simulated employee. Kept small (addresses as integers, no per-user collections)
/// because benchmarks run with up to millions of users.
struct User: Sendable {
    /// Index in the population; the office and VPN addresses derive from it.
    let number: Int32
    let identity: String
    let home: UInt8
    let group: UInt8
    let profile: UInt8
    let style: WorkStyle
    let loginType: UInt8
    let appCount: UInt8
    let homeAddress: UInt32
    /// The home address is one of MaxMind's test addresses: events from it carry no city
    /// fields and rely on enrichment.
    let homeAddressNeedsGeoIP: Bool
    var primaryDevice: UInt64
    var secondaryDevice: UInt64
    var primaryAgent: UInt8
    var secondaryAgent: UInt8
    var hasSecondary: Bool
    /// Bit i: the user's events used `Catalog.userAgents[i]`.
    var usedAgents: UInt32
    /// Bit i: an event of this user carried (or resolves to) city i. A superset of what was
    /// emitted, since it is updated when an episode is scheduled.
    var visitedCities: UInt64
    var logins: Int32 = 0
    /// Every login so far, emitted or scheduled, came from the office LAN.
    var onlyOfficeLogins: Bool
    /// Event time (ns) of the last event of the user's running episode; until then
    /// neither normal traffic nor another episode uses this user.
    var busyUntil: Int64 = .min
    /// Index into the live session list, -1 when the user has no normal session.
    var sessionSlot: Int32 = -1

    func app(_ k: Int) -> Int { Int(Catalog.groups[Int(group)].apps[k]) }

    /// Address and carried city (-1: none) of a login from where the user normally works.
    var usualLocation: (address: UInt32, place: Int) {
        switch style {
        case .office: (Catalog.host(Catalog.officePrefix, Int(number)), Int(home))
        case .vpn: (Catalog.host(Catalog.vpnPrefix, Int(number)), Int(home))
        case .remote: (homeAddress, homeAddressNeedsGeoIP ? -1 : Int(home))
        }
    }

    func device(secondary: Bool) -> (id: UInt64, agent: String) {
        let useSecondary = secondary && hasSecondary
        let agent = useSecondary ? secondaryAgent : primaryAgent
        return (useSecondary ? secondaryDevice : primaryDevice, Catalog.agentStrings[Int(agent)])
    }

    /// The custom fields of an event: the profile's template with the ids filled in.
    func fields(device: String, session: String?) -> ValueMap {
        var map = session == nil ? Catalog.attemptFields[Int(profile)] : Catalog.sessionFields[Int(profile)]
        map[Self.deviceIdKey] = .string(device)
        if let session { map[Self.sessionIdKey] = .string(session) }
        return map
    }

    private static let deviceIdKey = Value.string("deviceId")
    private static let sessionIdKey = Value.string("sessionId")
}

/// A normal (non-episode) session whose events are produced one arrival at a time.
struct Session: Sendable {
    let user: Int32
    let id: String
    /// The event's custom fields including deviceId and sessionId, shared by every event
    /// of the session.
    let fields: ValueMap
    let ip: String
    /// City whose fields the events carry, -1 for none (GeoIP resolves the address).
    let place: Int16
    let agent: UInt8
    let app: UInt8
    let loginType: UInt8
    var remaining: Int8
    /// The first attempt failed; the session's next event is the successful retry.
    var awaitingRetry: Bool
    var mfaFirst: Bool
}

enum Population {
    static func make(count: Int, rng: inout Xoshiro256, devices: inout DeviceIds) -> [User] {
        var users: [User] = []
        users.reserveCapacity(count)
        var testRangeUsed = [Int](repeating: 0, count: Catalog.cities.count)
        var homeHostsUsed = [Int](repeating: 0, count: Catalog.cities.count)
        for i in 0..<count {
            let home = Catalog.cityWeights.draw(&rng)
            let group = Catalog.groupWeights.draw(&rng)
            let manager = rng.chance(0.12)
            let styleDraw = rng.unit()
            let style: WorkStyle = styleDraw < 0.7 ? .office : styleDraw < 0.8 ? .vpn : .remote
            let loginDraw = rng.unit()
            let loginType: UInt8 = loginDraw < 0.5 ? 0 : loginDraw < 0.85 ? 1 : 2

            // Test-database addresses go to the first residents of those cities, one
            // each, so that no address is shared and per-address statistics stay clean.
            var address: UInt32? = nil
            var remaining = testRangeUsed[home]
            for range in Catalog.cities[home].geoIPTestRanges {
                if remaining < range.count {
                    address = range.first + UInt32(remaining)
                    testRangeUsed[home] += 1
                    break
                }
                remaining -= range.count
            }
            let needsGeoIP = address != nil
            if address == nil {
                address = Catalog.host(Catalog.cities[home].prefix, homeHostsUsed[home])
                homeHostsUsed[home] += 1
            }

            let primaryAgent = Catalog.desktopAgents[rng.below(Catalog.desktopAgents.count)]
            let hasSecondary = rng.chance(0.6)
            let secondaryAgent = Catalog.mobileAgents[rng.below(Catalog.mobileAgents.count)]
            users.append(User(
                number: Int32(i),
                identity: Format.user(i),
                home: UInt8(home),
                group: UInt8(group),
                profile: UInt8(group * 2 + (manager ? 1 : 0)),
                style: style,
                loginType: loginType,
                appCount: rng.chance(0.5) ? 3 : 2,
                homeAddress: address!,
                homeAddressNeedsGeoIP: needsGeoIP,
                primaryDevice: devices.next(),
                secondaryDevice: hasSecondary ? devices.next() : 0,
                primaryAgent: UInt8(primaryAgent),
                secondaryAgent: UInt8(secondaryAgent),
                hasSecondary: hasSecondary,
                usedAgents: 1 << UInt32(primaryAgent) | (hasSecondary ? 1 << UInt32(secondaryAgent) : 0),
                visitedCities: 1 << UInt64(home),
                onlyOfficeLogins: style == .office
            ))
        }
        return users
    }
}

/// Device ids never repeat within a run: a counter through the keyed 48-bit bijection.
struct DeviceIds: Sendable {
    let mixer: IdentifierMixer
    var counter: UInt64 = 0

    mutating func next() -> UInt64 {
        counter += 1
        return mixer.mix(counter)
    }
}
