import CAMFACore
import Yams

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The full uap-core answer for one user agent, as the conformance suite checks it.
public struct ParsedUserAgent: Sendable, Equatable {
    /// uap-core gives browsers and operating systems the same fields.
    public struct VersionedFamily: Sendable, Equatable {
        public var family: String
        public var major: String?
        public var minor: String?
        public var patch: String?
        public var patchMinor: String?

        public init(family: String, major: String? = nil, minor: String? = nil, patch: String? = nil, patchMinor: String? = nil) {
            self.family = family
            self.major = major
            self.minor = minor
            self.patch = patch
            self.patchMinor = patchMinor
        }
    }
    public typealias Browser = VersionedFamily
    public typealias OperatingSystem = VersionedFamily

    public struct Device: Sendable, Equatable {
        public var family: String
        public var brand: String?
        public var model: String?

        public init(family: String, brand: String? = nil, model: String? = nil) {
            self.family = family
            self.brand = brand
            self.model = model
        }
    }

    public var browser: Browser
    public var os: OperatingSystem
    public var device: Device
    /// "desktop", "mobile", "tablet", "bot" or "other"; see `UserAgentParser.deviceClass`.
    public var deviceClass: String

    public init(browser: Browser, os: OperatingSystem, device: Device, deviceClass: String) {
        self.browser = browser
        self.os = os
        self.device = device
        self.deviceClass = deviceClass
    }

    /// The shape the event carries.
    public var info: UserAgentInfo {
        UserAgentInfo(
            browserFamily: browser.family, browserMajor: browser.major, browserMinor: browser.minor,
            osFamily: os.family, osMajor: os.major, deviceFamily: device.family,
            deviceBrand: device.brand, deviceModel: device.model, deviceClass: deviceClass
        )
    }
}

/// uap-core's regexes.yaml, compiled. Immutable and shareable between threads; the
/// per-thread parts (match scratch space, cache) live in `UserAgentParser`.
public final class UserAgentRules: @unchecked Sendable {
    /// A replacement string split at its $1..$9 placeholders once, at load.
    struct Template {
        enum Piece {
            case literal(String)
            case group(Int)
        }

        var pieces: [Piece]

        init(_ text: String) {
            var pieces: [Piece] = []
            var literal = ""
            var scalars = text.unicodeScalars.makeIterator()
            var pendingDollar = false
            while let scalar = scalars.next() {
                if pendingDollar {
                    pendingDollar = false
                    if scalar.value >= 0x31 && scalar.value <= 0x39 {  // $1...$9
                        if !literal.isEmpty { pieces.append(.literal(literal)); literal = "" }
                        pieces.append(.group(Int(scalar.value - 0x30)))
                        continue
                    }
                    literal.append("$")
                }
                if scalar == "$" { pendingDollar = true } else { literal.unicodeScalars.append(scalar) }
            }
            if pendingDollar { literal.append("$") }
            if !literal.isEmpty { pieces.append(.literal(literal)) }
            self.pieces = pieces
        }
    }

    /// One output field of a rule: a replacement template, or by default a capture
    /// group (nil group: the field has no default, like a device's brand).
    enum Field {
        case template(Template)
        case group(Int?)
    }

    struct Rule {
        var pattern: PCRE2Pattern
        var fields: [Field]
    }

    let browserRules: [Rule]
    let osRules: [Rule]
    let deviceRules: [Rule]
    let maxCaptures: Int
    /// The file the rules came from, for messages.
    public let source: String
    /// How many patterns PCRE2 could JIT-compile (all, where JIT is available).
    public let jitCompiledCount: Int
    /// How many patterns have a required literal that is checked before PCRE2 runs.
    public var prefilteredCount: Int {
        (browserRules + osRules + deviceRules).filter { $0.pattern.requiredLiteral != nil }.count
    }
    public var ruleCount: Int { browserRules.count + osRules.count + deviceRules.count }

    static let browserFields: [(String, Int?)] = [
        ("family_replacement", 1), ("v1_replacement", 2), ("v2_replacement", 3),
        ("v3_replacement", 4), ("v4_replacement", 5),
    ]
    static let osFields: [(String, Int?)] = [
        ("os_replacement", 1), ("os_v1_replacement", 2), ("os_v2_replacement", 3),
        ("os_v3_replacement", 4), ("os_v4_replacement", 5),
    ]
    static let deviceFields: [(String, Int?)] = [
        ("device_replacement", 1), ("brand_replacement", nil), ("model_replacement", 1),
    ]

    /// Loads a regexes.yaml file. Throws `unreadableFile`, `invalidRules` or
    /// `invalidRegex`, each naming the file (and the section and entry index).
    public convenience init(path: String) throws(EnrichmentError) {
        let text: String
        do {
            text = try readTextFile(path)
        } catch {
            throw EnrichmentError(.unreadableFile, "\(path): \(error)")
        }
        try self.init(yaml: text, source: path)
    }

    public init(yaml: String, source: String = "<rules>") throws(EnrichmentError) {
        self.source = source
        let root: [String: Any]
        do {
            guard let loaded = try Yams.load(yaml: yaml) as? [String: Any] else {
                throw EnrichmentError(.invalidRules, "\(source): not a uap-core regexes.yaml (top level is not a mapping)")
            }
            root = loaded
        } catch let error as EnrichmentError {
            throw error
        } catch {
            throw EnrichmentError(.invalidRules, "\(source): invalid YAML: \(error)")
        }
        var jit = 0
        func section(_ name: String, _ fields: [(String, Int?)]) throws(EnrichmentError) -> [Rule] {
            guard let raw = root[name] else {
                throw EnrichmentError(.invalidRules, "\(source): missing section '\(name)'")
            }
            guard let list = raw as? [Any] else {
                throw EnrichmentError(.invalidRules, "\(source): section '\(name)' is not a list")
            }
            var rules: [Rule] = []
            rules.reserveCapacity(list.count)
            for (index, item) in list.enumerated() {
                guard let entry = item as? [String: Any], let regex = entry["regex"] as? String else {
                    throw EnrichmentError(.invalidRules, "\(source): \(name)[\(index)] has no 'regex' string")
                }
                let flag = entry["regex_flag"] as? String
                if let flag, flag != "i" {
                    throw EnrichmentError(.invalidRules, "\(source): \(name)[\(index)] has unsupported regex_flag '\(flag)'")
                }
                let pattern: PCRE2Pattern
                do {
                    pattern = try PCRE2Pattern(regex, caseInsensitive: flag == "i")
                } catch {
                    throw EnrichmentError(.invalidRegex, "\(source): \(name)[\(index)]: \(error.message)")
                }
                if pattern.isJIT { jit += 1 }
                let ruleFields: [Field] = fields.map { key, defaultGroup in
                    // YAML may type a replacement like '10' or 1.0 as a number; the
                    // rules mean the text.
                    if let value = entry[key], let text = replacementText(value) {
                        return .template(Template(text))
                    }
                    return .group(defaultGroup)
                }
                rules.append(Rule(pattern: pattern, fields: ruleFields))
            }
            return rules
        }
        browserRules = try section("user_agent_parsers", Self.browserFields)
        osRules = try section("os_parsers", Self.osFields)
        deviceRules = try section("device_parsers", Self.deviceFields)
        maxCaptures = (browserRules + osRules + deviceRules).map(\.pattern.captureCount).max() ?? 0
        jitCompiledCount = jit
    }
}

/// A replacement as text. YAML may type an unquoted '10' or 1.0 as a number, and the
/// rules mean the text; a null (`~`) is no replacement at all.
private func replacementText(_ value: Any) -> String? {
    switch value {
    case let s as String: return s
    case let i as Int: return String(i)
    case let d as Double: return String(d)
    default: return nil
    }
}

/// Parses user agents with uap-core rules: per section, the first rule whose regex
/// matches wins; replacements substitute $1..$9 (a group that did not match gives "");
/// results are trimmed and an empty result means "absent"; a family that ends up
/// absent is "Other". A bounded LRU cache in front, because real traffic repeats a
/// few thousand UA strings. One parser per thread.
public final class UserAgentParser {
    /// What the cache holds: a reference, so a hit costs one retain however many
    /// strings the answer has, with the event's shape built once per distinct UA.
    final class Resolved {
        let parsed: ParsedUserAgent
        let info: UserAgentInfo

        init(_ parsed: ParsedUserAgent) {
            self.parsed = parsed
            info = parsed.info
        }
    }

    public let rules: UserAgentRules
    private let matchData: MatchData
    private var cache: LRUCache<String, Resolved>

    public init(rules: UserAgentRules, cacheCapacity: Int = 10_000) {
        self.rules = rules
        matchData = MatchData(maxCaptures: rules.maxCaptures)
        cache = LRUCache(capacity: cacheCapacity)
    }

    /// Bytes of a UA past this many (UTF-8) are not looked at. Real UAs stay
    /// under 1 KiB; a multi-kilobyte one is junk or an attempt to make 1,270 regex
    /// searches expensive, and its first 4 KiB carry everything the rules read.
    public static let maxParsedLength = 4096

    /// Regex searches PCRE2 abandoned (resource limits) and counted as no match.
    public var abandonedMatches: Int { matchData.abandonedMatches }

    public var cacheHits: Int { cache.hits }
    public var cacheMisses: Int { cache.misses }
    public var cacheHitRate: Double { cache.hitRate }
    public var cachedCount: Int { cache.count }
    public func resetCacheStatistics() { cache.resetStatistics() }

    public func parse(_ userAgent: String) -> ParsedUserAgent {
        resolve(userAgent).parsed
    }

    func resolve(_ userAgent: String) -> Resolved {
        if let hit = cache.value(forKey: userAgent) { return hit }
        let resolved = Resolved(parseUncached(userAgent))
        cache.insert(resolved, forKey: userAgent)
        return resolved
    }

    /// The rules alone, bypassing the cache (the conformance tests and cold-path
    /// measurements use this).
    public func parseUncached(_ userAgent: String) -> ParsedUserAgent {
        var text = userAgent
        if text.utf8.count > Self.maxParsedLength {
            // Cut at a scalar boundary so the subject stays valid UTF-8.
            var end = text.utf8.index(text.utf8.startIndex, offsetBy: Self.maxParsedLength)
            while end > text.startIndex && UTF8.isContinuation(text.utf8[end]) { end = text.utf8.index(before: end) }
            text = String(text[..<end])
        }
        return text.withUTF8 { subject in
            let b = run(rules.browserRules, subject)
            let o = run(rules.osRules, subject)
            let d = run(rules.deviceRules, subject)
            let browser = ParsedUserAgent.Browser(
                family: b?[0] ?? "Other", major: b?[1], minor: b?[2], patch: b?[3], patchMinor: b?[4]
            )
            let os = ParsedUserAgent.OperatingSystem(
                family: o?[0] ?? "Other", major: o?[1], minor: o?[2], patch: o?[3], patchMinor: o?[4]
            )
            let device = ParsedUserAgent.Device(family: d?[0] ?? "Other", brand: d?[1], model: d?[2])
            return ParsedUserAgent(
                browser: browser, os: os, device: device,
                deviceClass: Self.deviceClass(browser: browser, os: os, device: device, userAgent: subject)
            )
        }
    }

    /// nil when no rule matches; otherwise one value per field of the section.
    private func run(_ rules: [UserAgentRules.Rule], _ subject: UnsafeBufferPointer<UInt8>) -> [String?]? {
        for rule in rules where matchData.search(rule.pattern, in: subject) {
            return rule.fields.map { field -> String? in
                let raw: String?
                switch field {
                case .group(nil):
                    raw = nil
                case .group(let n?):
                    raw = matchData.group(n, of: rule.pattern, in: subject).map(String.init)
                case .template(let template):
                    var out = ""
                    for piece in template.pieces {
                        switch piece {
                        case .literal(let s): out += s
                        case .group(let n): out += matchData.group(n, of: rule.pattern, in: subject) ?? ""
                        }
                    }
                    raw = out
                }
                guard let trimmed = raw?.trimmingWhitespace(), !trimmed.isEmpty else { return nil }
                return trimmed
            }
        }
        return nil
    }

    static let mobileOSFamilies: Set<String> = [
        "iOS", "Android", "Windows Phone", "Windows Mobile", "Windows CE", "BlackBerry OS",
        "BlackBerry Tablet OS", "KaiOS", "Symbian OS", "Symbian^3", "Symbian^3 Anna", "Symbian^3 Belle",
        "Firefox OS", "Tizen", "Sailfish", "Ubuntu Touch", "webOS", "Bada", "MeeGo", "Maemo",
        "HarmonyOS", "iPadOS", "watchOS", "WatchOS", "Nokia Series 40", "Nokia Series 30 Plus",
    ]
    static let desktopOSFamilies: Set<String> = [
        "Mac OS X", "Mac OS", "macOS", "Linux", "Ubuntu", "Debian", "Fedora", "Red Hat", "SUSE",
        "openSUSE", "Mint", "Arch Linux", "Gentoo", "Slackware", "Mandriva", "CentOS", "Kubuntu",
        "Xubuntu", "Chrome OS", "ChromeOS", "FreeBSD", "OpenBSD", "NetBSD", "Solaris", "SunOS",
    ]

    /// The coarse class the policies key on. Rules, in order:
    /// 1. bot: uap-core's device family "Spider" (its catch-all for crawlers and
    ///    monitoring agents).
    /// 2. tablet: device family or model naming a tablet (iPad, Kindle, "Tablet", Galaxy
    ///    Tab), or Android without the "Mobile" token (Google's documented convention
    ///    for tablet browsers).
    /// 3. mobile: a phone/handheld OS family (iOS, Android, Windows Phone, KaiOS, ...),
    ///    or a "Mobile"/"Mobi" token in the UA.
    /// 4. desktop: Windows (other than phone/CE/mobile), macOS, Linux distributions,
    ///    ChromeOS, the BSDs.
    /// 5. other: everything else (TVs, consoles, libraries, unknown).
    static func deviceClass(
        browser: ParsedUserAgent.Browser, os: ParsedUserAgent.OperatingSystem,
        device: ParsedUserAgent.Device, userAgent: UnsafeBufferPointer<UInt8>
    ) -> String {
        if device.family == "Spider" { return "bot" }
        let hasMobileToken = contains(userAgent, "Mobi")
        let name = device.family + " " + (device.model ?? "")
        if name.contains("iPad") || name.contains("Kindle") || name.contains("Tablet")
            || name.contains("Galaxy Tab") || os.family == "iPadOS" || os.family == "BlackBerry Tablet OS"
            || (os.family == "Android" && !hasMobileToken && device.family != "Other") {
            return "tablet"
        }
        if mobileOSFamilies.contains(os.family) || hasMobileToken { return "mobile" }
        if os.family.hasPrefix("Windows") || desktopOSFamilies.contains(os.family) { return "desktop" }
        return "other"
    }

    private static func contains(_ haystack: UnsafeBufferPointer<UInt8>, _ needle: StaticString) -> Bool {
        let n = needle.utf8CodeUnitCount
        guard n > 0, haystack.count >= n else { return false }
        let needleBytes = UnsafeBufferPointer(start: needle.utf8Start, count: n)
        var i = 0
        while i + n <= haystack.count {
            if haystack[i] == needleBytes[0] {
                var j = 1
                while j < n && haystack[i + j] == needleBytes[j] { j += 1 }
                if j == n { return true }
            }
            i += 1
        }
        return false
    }
}

/// Whole-file read with the C library: the module stays free of Foundation.
func readTextFile(_ path: String) throws(EnrichmentError) -> String {
    guard let file = fopen(path, "rb") else {
        throw EnrichmentError(.unreadableFile, "\(path): \(String(cString: strerror(errno)))")
    }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = fread(&chunk, 1, chunk.count, file)
        if n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
        if n < chunk.count {
            if ferror(file) != 0 {
                throw EnrichmentError(.unreadableFile, "\(path): read error")
            }
            break
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}
