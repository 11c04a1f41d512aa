import CAMFACore

/// The fixed world the simulated users live in. Indexes into these tables are what the
/// per-user state stores, so the tables' order is part of the output: append, don't
/// reorder, or a seed stops reproducing earlier runs.
enum Catalog {
    // MARK: Places

    /// Coarse areas: a login from another region is what "far" means for travel episodes
    /// (no trigonometry, so no libm differences between platforms).
    enum Region: UInt8, Sendable {
        case eastAsia, southeastAsia, southAsia, oceania, europe, northAmerica, latinAmerica, middleEast, africa
    }

    struct City: Sendable {
        let name: String
        let province: String
        let country: String
        let region: Region
        /// Relative share of users living there.
        let weight: Int
        /// First two octets of the /16 home connections come from; the next /16
        /// (second octet + 1) serves roaming connections (hotels, mobile carriers), so a
        /// traveller's address never equals a resident's home address.
        let prefix: (UInt8, UInt8)
        /// Ranges of MaxMind's GeoIP2-City-Test database that resolve to this city. Users
        /// given one of these addresses send no city fields, so enrichment has to supply
        /// them and the answer agrees with the user's home city. Names follow that
        /// database so both sources spell the place the same way.
        let geoIPTestRanges: [AddressRange]
    }

    struct AddressRange: Sendable {
        let first: UInt32
        let count: Int
    }

    /// The public prefixes sit in address blocks of the city's regional registry; they do
    /// not claim a real geolocation (the events carry their city), and none overlaps a
    /// range of the MaxMind test databases, which would contradict the carried city.
    static let cities: [City] = [
        City(name: "Beijing", province: "Beijing", country: "CN", region: .eastAsia, weight: 8, prefix: (123, 112), geoIPTestRanges: []),
        City(name: "Shanghai", province: "Shanghai", country: "CN", region: .eastAsia, weight: 8, prefix: (116, 228), geoIPTestRanges: []),
        City(name: "Shenzhen", province: "Guangdong", country: "CN", region: .eastAsia, weight: 6, prefix: (113, 88), geoIPTestRanges: []),
        City(name: "Hangzhou", province: "Zhejiang", country: "CN", region: .eastAsia, weight: 4, prefix: (115, 196), geoIPTestRanges: []),
        City(name: "Chengdu", province: "Sichuan", country: "CN", region: .eastAsia, weight: 3, prefix: (171, 214), geoIPTestRanges: []),
        City(name: "Changchun", province: "Jilin Sheng", country: "CN", region: .eastAsia, weight: 2, prefix: (175, 18),
             geoIPTestRanges: [AddressRange(first: ip(175, 16, 199, 1), count: 254)]),
        City(name: "Hong Kong", province: "Hong Kong", country: "HK", region: .eastAsia, weight: 3, prefix: (112, 118), geoIPTestRanges: []),
        City(name: "Tokyo", province: "Tokyo", country: "JP", region: .eastAsia, weight: 4, prefix: (126, 72), geoIPTestRanges: []),
        City(name: "Osaka", province: "Osaka", country: "JP", region: .eastAsia, weight: 2, prefix: (110, 232), geoIPTestRanges: []),
        City(name: "Seoul", province: "Seoul", country: "KR", region: .eastAsia, weight: 3, prefix: (211, 234), geoIPTestRanges: []),
        City(name: "Singapore", province: "Singapore", country: "SG", region: .southeastAsia, weight: 3, prefix: (118, 200), geoIPTestRanges: []),
        City(name: "Mumbai", province: "Maharashtra", country: "IN", region: .southAsia, weight: 3, prefix: (49, 36), geoIPTestRanges: []),
        City(name: "Bangalore", province: "Karnataka", country: "IN", region: .southAsia, weight: 3, prefix: (106, 51), geoIPTestRanges: []),
        City(name: "Sydney", province: "New South Wales", country: "AU", region: .oceania, weight: 2, prefix: (144, 130), geoIPTestRanges: []),
        City(name: "London", province: "England", country: "GB", region: .europe, weight: 4, prefix: (86, 128),
             geoIPTestRanges: [
                AddressRange(first: ip(81, 2, 69, 142), count: 2), AddressRange(first: ip(81, 2, 69, 144), count: 16),
                AddressRange(first: ip(81, 2, 69, 160), count: 32), AddressRange(first: ip(81, 2, 69, 192), count: 16),
             ]),
        City(name: "Boxford", province: "England", country: "GB", region: .europe, weight: 1, prefix: (86, 140),
             geoIPTestRanges: [AddressRange(first: ip(2, 125, 160, 216), count: 8)]),
        City(name: "Paris", province: "Île-de-France", country: "FR", region: .europe, weight: 3, prefix: (90, 84), geoIPTestRanges: []),
        City(name: "Berlin", province: "Berlin", country: "DE", region: .europe, weight: 3, prefix: (91, 64), geoIPTestRanges: []),
        City(name: "Amsterdam", province: "North Holland", country: "NL", region: .europe, weight: 2, prefix: (145, 128), geoIPTestRanges: []),
        City(name: "Madrid", province: "Madrid", country: "ES", region: .europe, weight: 2, prefix: (83, 44), geoIPTestRanges: []),
        City(name: "Linköping", province: "Östergötland County", country: "SE", region: .europe, weight: 1, prefix: (78, 64),
             geoIPTestRanges: [AddressRange(first: ip(89, 160, 20, 112), count: 16), AddressRange(first: ip(89, 160, 20, 128), count: 127)]),
        City(name: "Zurich", province: "Zurich", country: "CH", region: .europe, weight: 2, prefix: (85, 4), geoIPTestRanges: []),
        City(name: "New York", province: "New York", country: "US", region: .northAmerica, weight: 4, prefix: (24, 44), geoIPTestRanges: []),
        City(name: "San Francisco", province: "California", country: "US", region: .northAmerica, weight: 3, prefix: (73, 158), geoIPTestRanges: []),
        City(name: "Milton", province: "Washington", country: "US", region: .northAmerica, weight: 1, prefix: (71, 226),
             geoIPTestRanges: [AddressRange(first: ip(216, 160, 83, 56), count: 8)]),
        City(name: "Chicago", province: "Illinois", country: "US", region: .northAmerica, weight: 2, prefix: (98, 206), geoIPTestRanges: []),
        City(name: "Toronto", province: "Ontario", country: "CA", region: .northAmerica, weight: 2, prefix: (99, 224), geoIPTestRanges: []),
        City(name: "Mexico City", province: "Mexico City", country: "MX", region: .latinAmerica, weight: 2, prefix: (187, 188), geoIPTestRanges: []),
        City(name: "São Paulo", province: "São Paulo", country: "BR", region: .latinAmerica, weight: 3, prefix: (177, 32), geoIPTestRanges: []),
        City(name: "Buenos Aires", province: "Buenos Aires", country: "AR", region: .latinAmerica, weight: 1, prefix: (181, 44), geoIPTestRanges: []),
        City(name: "Dubai", province: "Dubai", country: "AE", region: .middleEast, weight: 2, prefix: (94, 200), geoIPTestRanges: []),
        City(name: "Johannesburg", province: "Gauteng", country: "ZA", region: .africa, weight: 1, prefix: (105, 224), geoIPTestRanges: []),
    ]

    static let cityWeights = WeightedIndex(cities.map(\.weight))
    // Flat copies of the fields every event reads: indexing an array of structs with
    // several references retains them all.
    static let cityNames = cities.map(\.name)
    static let cityProvinces = cities.map(\.province)
    static let cityCountries = cities.map(\.country)

    /// Office LAN and VPN pool; the example policies treat these CIDRs as the intranet.
    static let officePrefix: (UInt8, UInt8) = (10, 20)
    static let vpnPrefix: (UInt8, UInt8) = (10, 99)
    /// Hosting ranges the attacks of ip-burst and failure-run episodes come from. They
    /// are disjoint from every city prefix, so an attack address carries nothing but the
    /// attack.
    static let attackPrefixes: [(UInt8, UInt8)] = [(185, 220), (45, 134)]
    /// A VPN provider's exits that anonymous-IP databases list: 1.2.0.0/16 is an anonymous
    /// VPN in MaxMind's GeoIP2-Anonymous-IP test database and in no range of the city and
    /// ASN test databases, so enrichment with the test data flags it and nothing else.
    static let listedVPNPrefix: (UInt8, UInt8) = (1, 2)

    static func ip(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> UInt32 {
        UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Hosts of a /16 with the network and broadcast octets left out.
    static let hostsPerPrefix = 254 * 256

    /// The k-th host of a /16, scattered so that consecutive k don't look sequential.
    /// 40_503 is coprime with 65_024 = 2^9 * 127, so k ↦ address is one-to-one below
    /// `hostsPerPrefix`.
    static func host(_ prefix: (UInt8, UInt8), _ k: Int) -> UInt32 {
        let scattered = (k % hostsPerPrefix) * 40_503 % hostsPerPrefix
        return ip(prefix.0, prefix.1, UInt8(scattered / 254), UInt8(scattered % 254 + 1))
    }

    static func roamingHost(city: Int, _ k: Int) -> UInt32 {
        let p = cities[city].prefix
        return host((p.0, p.1 &+ 1), k)
    }

    // MARK: Applications

    struct App: Sendable {
        let id: String
        /// (resourcesType, actionType) pairs access events choose from.
        let actions: [(String, String)]
    }

    static let apps: [App] = [
        App(id: "portal", actions: [("dashboard", "read"), ("profile", "read"), ("profile", "update")]),
        App(id: "mail", actions: [("message", "read"), ("message", "send"), ("attachment", "download")]),
        App(id: "crm", actions: [("customer", "read"), ("customer", "update"), ("opportunity", "create"), ("report", "export")]),
        App(id: "wiki", actions: [("document", "read"), ("document", "edit"), ("document", "create")]),
        App(id: "finance-app", actions: [("invoice", "read"), ("payment", "approve"), ("ledger", "export")]),
        App(id: "hr-app", actions: [("employee-record", "read"), ("employee-record", "update"), ("payroll", "read")]),
        App(id: "devops", actions: [("repository", "read"), ("pipeline", "run"), ("secret", "read"), ("deployment", "create")]),
        App(id: "chat", actions: [("message", "send"), ("channel", "read"), ("file", "upload")]),
    ]

    static let appIds: [String] = apps.map(\.id)

    // MARK: User agents

    struct Agent: Sendable {
        let ua: String
        let mobile: Bool
    }

    /// Browsers employees use. Desktop entries first: a user's first device is a desktop.
    static let userAgents: [Agent] = [
        Agent(ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", mobile: false),
        Agent(ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36", mobile: false),
        Agent(ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36 Edg/121.0.0.0", mobile: false),
        Agent(ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:122.0) Gecko/20100101 Firefox/122.0", mobile: false),
        Agent(ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 OPR/106.0.0.0", mobile: false),
        Agent(ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36", mobile: false),
        Agent(ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2.1 Safari/605.1.15", mobile: false),
        Agent(ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.2; rv:122.0) Gecko/20100101 Firefox/122.0", mobile: false),
        Agent(ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91", mobile: false),
        Agent(ua: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", mobile: false),
        Agent(ua: "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", mobile: false),
        Agent(ua: "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", mobile: false),
        Agent(ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1", mobile: true),
        Agent(ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1", mobile: true),
        Agent(ua: "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1", mobile: true),
        Agent(ua: "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36", mobile: true),
        Agent(ua: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.101 Mobile Safari/537.36", mobile: true),
        Agent(ua: "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36", mobile: true),
        Agent(ua: "Mozilla/5.0 (Android 14; Mobile; rv:122.0) Gecko/122.0 Firefox/122.0", mobile: true),
        Agent(ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 16_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.44(0x18002c2c) NetType/WIFI Language/zh_CN", mobile: true),
    ]

    static let agentStrings: [String] = userAgents.map(\.ua)
    static let desktopAgents: [Int] = userAgents.indices.filter { !userAgents[$0].mobile }
    static let mobileAgents: [Int] = userAgents.indices.filter { userAgents[$0].mobile }

    /// What credential-stuffing and spraying tools send; half of the attacks pretend to be
    /// an ordinary desktop browser instead.
    static let toolAgents: [String] = [
        "python-requests/2.31.0",
        "curl/8.4.0",
        "Go-http-client/1.1",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.109 Safari/537.36",
    ]

    // MARK: Organisation

    struct Group: Sendable {
        let name: String
        let department: String
        /// Per mille of users.
        let share: Int
        let staffRoles: [String]
        let managerRoles: [String]
        /// Apps members use day to day (indexes into `apps`). At most three per user, so
        /// one user's address never reaches the ip-burst threshold of five apps.
        let apps: [UInt8]
    }

    static let groups: [Group] = [
        Group(name: "engineering", department: "Engineering", share: 420, staffRoles: ["employee", "developer"],
              managerRoles: ["employee", "developer", "admin"], apps: [6, 3, 7]),
        Group(name: "sales", department: "Sales", share: 240, staffRoles: ["employee", "sales-rep"],
              managerRoles: ["employee", "sales-manager"], apps: [2, 1, 0]),
        Group(name: "support", department: "Support", share: 180, staffRoles: ["employee", "support-agent"],
              managerRoles: ["employee", "support-lead"], apps: [2, 3, 7]),
        Group(name: "finance", department: "Finance", share: 80, staffRoles: ["employee", "accountant"],
              managerRoles: ["employee", "finance-manager"], apps: [4, 1, 0]),
        Group(name: "hr", department: "Human Resources", share: 80, staffRoles: ["employee", "hr-partner"],
              managerRoles: ["employee", "hr-manager"], apps: [5, 1, 0]),
    ]

    static let groupWeights = WeightedIndex(groups.map(\.share))
    static let financeGroup = 3
    static let hrGroup = 4

    /// The custom fields of a user's events, one template per (group, manager) profile,
    /// with deviceId and sessionId already present. Filling them in replaces two values
    /// instead of inserting keys, so the key list and hash index stay shared and a login
    /// costs one small array copy instead of a map rebuild.
    /// Profile index = group * 2 + (manager ? 1 : 0).
    static let sessionFields: [ValueMap] = profileTemplates(withSession: true)
    /// The same without sessionId, for failed logins.
    static let attemptFields: [ValueMap] = profileTemplates(withSession: false)

    private static func profileTemplates(withSession: Bool) -> [ValueMap] {
        groups.flatMap { g in
            [false, true].map { manager in
                var groups: [Value] = [.string(g.name)]
                if manager { groups.append(.string("managers")) }
                var pairs: [(String, Value)] = [
                    ("userGroups", .list(groups)),
                    ("roles", .list((manager ? g.managerRoles : g.staffRoles).map { .string($0) })),
                    ("department", .string(g.department)),
                    ("deviceId", .null),
                ]
                if withSession { pairs.append(("sessionId", .null)) }
                return ValueMap(pairs)
            }
        }
    }

    static let loginTypes = ["password", "sso", "passkey"]
}

/// Draws an index with probability proportional to integer weights.
struct WeightedIndex: Sendable {
    private let cumulative: [Int]

    init(_ weights: [Int]) {
        var sum = 0
        cumulative = weights.map { w in
            sum += w
            return sum
        }
    }

    func draw(_ rng: inout Xoshiro256) -> Int {
        let r = rng.below(cumulative[cumulative.count - 1])
        var lo = 0
        var hi = cumulative.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if cumulative[mid] > r { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }
}

/// Formatting without Foundation or interpolation: ids and addresses are built at
/// every login, and all of them fit Swift's 15-byte small strings.
enum Format {
    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// "<p>-" followed by 12 lowercase hex digits of a 48-bit value.
    static func identifier(_ prefix: UInt8, _ value: UInt64) -> String {
        String(unsafeUninitializedCapacity: 14) { buffer in
            buffer[0] = prefix
            buffer[1] = UInt8(ascii: "-")
            for i in 0..<12 {
                buffer[2 + i] = hexDigits[Int((value >> UInt64((11 - i) * 4)) & 0xF)]
            }
            return 14
        }
    }

    static func ipv4(_ address: UInt32) -> String {
        String(unsafeUninitializedCapacity: 15) { buffer in
            var n = 0
            for shift in stride(from: 24, through: 0, by: -8) {
                if shift != 24 {
                    buffer[n] = UInt8(ascii: ".")
                    n += 1
                }
                let octet = Int((address >> UInt32(shift)) & 0xFF)
                if octet >= 100 {
                    buffer[n] = UInt8(ascii: "0") + UInt8(octet / 100)
                    n += 1
                }
                if octet >= 10 {
                    buffer[n] = UInt8(ascii: "0") + UInt8(octet / 10 % 10)
                    n += 1
                }
                buffer[n] = UInt8(ascii: "0") + UInt8(octet % 10)
                n += 1
            }
            return n
        }
    }

    /// "u" and the user number, zero-padded to six digits.
    static func user(_ number: Int) -> String {
        var digits = String(number)
        if digits.utf8.count < 6 { digits = String(repeating: "0", count: 6 - digits.utf8.count) + digits }
        return "u" + digits
    }
}
