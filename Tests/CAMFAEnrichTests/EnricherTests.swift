import CAMFACore
import CAMFAEnrich
import Foundation
import Testing

@Suite("Enricher", .enabled(if: TestData.shouldRun, Comment(rawValue: TestData.skipMessage)))
struct EnricherTests {
    static let chromeWindows =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
    static let safariIPhone =
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"

    func configuration(overwrite: Bool = false) throws -> EnrichmentConfiguration {
        EnrichmentConfiguration(
            cityDatabase: try TestData.require("maxmind/test-data/GeoIP2-City-Test.mmdb"),
            asnDatabase: try TestData.require("maxmind/test-data/GeoLite2-ASN-Test.mmdb"),
            anonymousIPDatabase: try TestData.require("maxmind/test-data/GeoIP2-Anonymous-IP-Test.mmdb"),
            userAgentRules: try TestData.require("uap-core/regexes.yaml"),
            zones: ["intranet": ["10.0.0.0/8"], "uk-office": ["81.2.69.0/24"]],
            overwrite: overwrite
        )
    }

    @Test func fillsEverythingAnEventLacks() throws {
        let enricher = try Enricher(configuration: configuration())
        #expect(enricher.warnings.isEmpty)
        var event = UEBAEvent(requestDate: 0, ip: "81.2.69.142", ua: Self.chromeWindows, originalIdentity: "u1")
        enricher.enrich(&event)
        #expect(event.city == "London")
        #expect(event.province == "England")
        #expect(event.country == "GB")
        #expect(event.networkZone == "uk-office")
        #expect(event.geo?.latitude != nil)
        #expect(event.geo?.accuracyRadius != nil)
        #expect(event.geo?.isAnonymous == true)  // 81.2.69.0/24 is in the anonymous-IP test data
        #expect(event.geo?.isHostingProvider == true)
        #expect(event.browserType == "Chrome")
        #expect(event.systemType == "Windows")
        #expect(event.deviceType == "desktop")
        #expect(event.userAgent?.browserMajor == "120")
    }

    @Test func asnAndNotAnonymous() throws {
        let enricher = try Enricher(configuration: configuration())
        var event = UEBAEvent(requestDate: 0, ip: "1.128.0.1", originalIdentity: "u1")
        enricher.enrich(&event)
        #expect(event.geo?.asn == 1221)
        #expect(event.geo?.asOrganization == "Telstra Pty Ltd")
        #expect(event.geo?.isAnonymous == false)
        #expect(event.geo?.isTorExitNode == false)
    }

    @Test func fillMissingKeepsWhatTheProducerSent() throws {
        let enricher = try Enricher(configuration: configuration())
        var event = UEBAEvent(
            requestDate: 0, ip: "81.2.69.142", city: "Paris", ua: Self.safariIPhone,
            browserType: "MyBrowser", originalIdentity: "u1", networkZone: "dmz"
        )
        enricher.enrich(&event)
        #expect(event.city == "Paris")
        #expect(event.province == "England")
        #expect(event.country == "GB")
        #expect(event.networkZone == "dmz")
        #expect(event.browserType == "MyBrowser")
        #expect(event.systemType == "iOS")
        #expect(event.deviceType == "mobile")
    }

    @Test func overwriteReplacesResolvedValuesButNeverErases() throws {
        let enricher = try Enricher(configuration: configuration(overwrite: true))
        var event = UEBAEvent(
            requestDate: 0, ip: "81.2.69.142", city: "Paris", ua: Self.safariIPhone,
            browserType: "MyBrowser", originalIdentity: "u1", networkZone: "dmz"
        )
        enricher.enrich(&event)
        #expect(event.city == "London")
        #expect(event.networkZone == "uk-office")
        #expect(event.browserType == "Mobile Safari")

        // 10.1.2.3 is in no database: the producer's city stays.
        var unknown = UEBAEvent(requestDate: 0, ip: "10.1.2.3", city: "Lyon", originalIdentity: "u2")
        enricher.enrich(&unknown)
        #expect(unknown.city == "Lyon")
        #expect(unknown.networkZone == "intranet")
    }

    @Test func missingFilesWarnOnceEachAndTurnThatEnrichmentOff() throws {
        let config = EnrichmentConfiguration(
            cityDatabase: "/nonexistent/GeoLite2-City.mmdb",
            asnDatabase: nil,
            anonymousIPDatabase: "/nonexistent/GeoIP2-Anonymous-IP.mmdb",
            userAgentRules: "/nonexistent/regexes.yaml",
            zones: ["intranet": ["10.0.0.0/8"]]
        )
        let enricher = try Enricher(configuration: config)
        #expect(enricher.warnings.count == 3)
        #expect(enricher.warnings.contains { $0.contains("/nonexistent/GeoLite2-City.mmdb") })
        #expect(enricher.warnings.contains { $0.contains("/nonexistent/regexes.yaml") })
        var event = UEBAEvent(requestDate: 0, ip: "10.9.9.9", ua: Self.chromeWindows, originalIdentity: "u1")
        enricher.enrich(&event)
        #expect(event.city == nil)
        #expect(event.geo == nil)
        #expect(event.userAgent == nil)
        #expect(event.networkZone == "intranet")
    }

    /// Invalid-Node-Count fails at open; Broken-Double-Format opens and fails at the
    /// first lookup, which the startup self-check makes before any event.
    @Test(arguments: ["GeoIP2-City-Test-Invalid-Node-Count", "GeoIP2-City-Test-Broken-Double-Format"])
    func corruptDatabaseIsAStartupErrorNamingTheFile(name: String) throws {
        let path = try TestData.require("maxmind/test-data/\(name).mmdb")
        var config = try configuration()
        config.cityDatabase = path
        #expect {
            try Enricher(configuration: config)
        } throws: { error in
            (error as? EnrichmentError)?.code == .corruptDatabase && "\(error)".contains(path)
        }
    }

    @Test func corruptRulesAreAnErrorNamingTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-enrich-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("regexes.yaml")
        try "user_agent_parsers:\n  - regex: '(unclosed'\nos_parsers: []\ndevice_parsers: []\n"
            .write(to: bad, atomically: true, encoding: .utf8)
        let config = EnrichmentConfiguration(cityDatabase: nil, asnDatabase: nil, anonymousIPDatabase: nil, userAgentRules: bad.path)
        #expect {
            try Enricher(configuration: config)
        } throws: { error in
            (error as? EnrichmentError)?.code == .invalidRegex && "\(error)".contains(bad.path)
                && "\(error)".contains("user_agent_parsers[0]")
        }
        try "not: [valid".write(to: bad, atomically: true, encoding: .utf8)
        #expect {
            try Enricher(configuration: config)
        } throws: { error in
            (error as? EnrichmentError)?.code == .invalidRules && "\(error)".contains(bad.path)
        }
    }

    @Test func invalidZoneIsAnError() {
        let config = EnrichmentConfiguration(
            cityDatabase: nil, asnDatabase: nil, anonymousIPDatabase: nil, userAgentRules: nil,
            zones: ["vpn": ["10.8.0.0/33"]]
        )
        #expect(throws: EnrichmentError.self) { try Enricher(configuration: config) }
    }

    @Test func cachesRepeatUserAgentsAndAddresses() throws {
        let enricher = try Enricher(configuration: configuration())
        for _ in 0..<10 {
            var event = UEBAEvent(requestDate: 0, ip: "81.2.69.142", ua: Self.chromeWindows, originalIdentity: "u")
            enricher.enrich(&event)
            #expect(event.browserType == "Chrome")
        }
        #expect(enricher.userAgentCacheHitRate == 0.9)
        #expect(enricher.ipCacheHitRate == 0.9)
    }
}

@Suite("Device class", .enabled(if: TestData.shouldRun, Comment(rawValue: TestData.skipMessage)))
struct DeviceClassTests {
    @Test(arguments: [
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "bot"),
        ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1", "tablet"),
        ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/116.0.0.0 Safari/537.36", "tablet"),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", "mobile"),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", "mobile"),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15", "desktop"),
        ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "desktop"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", "desktop"),
        ("curl/8.4.0", "other"),
        ("", "other"),
    ])
    func classifies(ua: String, expected: String) throws {
        let rules = try #require(UAPCoreConformanceTests.rules)
        let parser = UserAgentParser(rules: rules)
        #expect(parser.parse(ua).deviceClass == expected, "\(ua)")
    }
}

@Suite("User-agent parser", .enabled(if: TestData.shouldRun, Comment(rawValue: TestData.skipMessage)))
struct UserAgentParserTests {
    @Test func hugeUserAgentIsCutNotSlow() throws {
        let rules = try #require(UAPCoreConformanceTests.rules)
        let parser = UserAgentParser(rules: rules, cacheCapacity: 0)
        let head = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 "
        let huge = head + String(repeating: "é(a;b) ", count: 20_000)
        let clock = ContinuousClock()
        var parsed: ParsedUserAgent?
        let elapsed = clock.measure { parsed = parser.parse(huge) }
        #expect(parsed?.browser.family == "Chrome")
        #expect(parsed?.os.family == "Windows")
        #expect(elapsed < .seconds(5), "parsing a 160 KB UA took \(elapsed)")
        #expect(parser.abandonedMatches == 0)
    }

    /// The literal prefilter must never reject a subject the regex matches: optional
    /// characters, quantified escapes, groups, classes and multi-byte text around the
    /// literal runs.
    @Test(arguments: [
        ("ab?cdef", "acdef"), ("xy\\.?zzz", "xyzzz"), ("Foo{0,2}Barbaz", "FoBarbaz"), ("(Teams)/(\\d+)", "Teams/3"), ("x(?:ab)+cde", "xababcde"), ("(ab)?cdef", "cdef"), ("(a|b)cdef", "bcdef"), ("(?<=q)uvwx", "quvwx"),
        ("(?:Opt)?Product/\\d", "Product/1"), ("[Tt]eams/(\\d+)", "teams/1"), ("Zé?bra", "Zbra"),
        ("Mo+zilla", "Moooozilla"), ("abc(?:x|y)*defg", "abcxydefg"), ("(?i)casefree", "CASEFREE"),
        ("one|two", "two"), ("a{2}bcd", "aabcd"), ("Bot\\/\\$Ver", "Bot/$Ver"), ("abc{1,}d", "abcccd"),
    ])
    func prefilterNeverHidesAMatch(pattern: String, subject: String) throws {
        let yaml = "user_agent_parsers:\n  - regex: '\(pattern)'\n    family_replacement: 'hit'\nos_parsers: []\ndevice_parsers: []\n"
        let parser = UserAgentParser(rules: try UserAgentRules(yaml: yaml))
        #expect(parser.parse(subject).browser.family == "hit", "\(pattern) on \(subject)")
        #expect(parser.parse("nothing relevant").browser.family == "Other")
    }

    @Test func replacementsSubstituteGroupsTrimAndDefault() throws {
        let yaml = """
        user_agent_parsers:
          - regex: '(Foo)Browser/(\\d+)\\.(\\d+)'
            family_replacement: '$1 Browser ($2)'
            v2_replacement: '  '
        os_parsers:
          - regex: 'FooOS(?: (\\d+))?'
            os_replacement: 'Foo OS'
            os_v1_replacement: '$1'
        device_parsers:
          - regex: 'foodevice (\\w+)-(\\w+)'
            regex_flag: 'i'
            device_replacement: ' $1 $2 '
            brand_replacement: 'Foo$9'
            model_replacement: '$2'
        """
        let rules = try UserAgentRules(yaml: yaml)
        let parser = UserAgentParser(rules: rules)
        let p = parser.parse("FooBrowser/3.4 FooOS FOODEVICE x1-Pro")
        #expect(p.browser == .init(family: "Foo Browser (3)", major: "3", minor: nil, patch: nil, patchMinor: nil))
        #expect(p.os.family == "Foo OS")
        #expect(p.os.major == nil)
        #expect(p.device == .init(family: "x1 Pro", brand: "Foo", model: "Pro"))
        let other = parser.parse("nothing matches")
        #expect(other.browser.family == "Other")
        #expect(other.os.family == "Other")
        #expect(other.device.family == "Other")
        #expect(other.device.brand == nil)
    }
}
