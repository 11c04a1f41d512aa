import CAMFAEnrich
import Foundation
import Testing

@Suite("MaxMind test databases", .enabled(if: TestData.shouldRun, Comment(rawValue: TestData.skipMessage)))
struct GeoIPDatabaseTests {
    /// A JSON network from source-data with its record, in the 128-bit space where an
    /// IPv4 network and its ::a.b.c.d/96+n alias are the same network, which is how
    /// MMDB trees store them.
    struct SourceNetwork {
        var key: String
        var network: IPNetwork
        var record: [String: Any]
    }

    static func canonical(_ address: IPAddress) -> IPAddress {
        if address.high == 0 && address.low >> 32 == 0 {
            return IPAddress(ipv4: UInt32(truncatingIfNeeded: address.low))
        }
        return address
    }

    static func loadSource(_ name: String) throws -> [SourceNetwork] {
        let path = try TestData.require("maxmind/source-data/\(name).json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
        let list = try #require(json as? [[String: Any]])
        return try list.flatMap { item in
            try item.map { key, value in
                var network = try #require(IPNetwork(cidr: key), "bad CIDR in source data: \(key)")
                network.address = canonical(network.address)
                return SourceNetwork(key: key, network: network, record: try #require(value as? [String: Any]))
            }
        }
    }

    /// The addresses to probe for each network: its first address and, when the prefix
    /// leaves room, its last; IPv4-range networks are probed in both notations.
    static func probes(_ source: SourceNetwork) -> [String] {
        let text = source.key.split(separator: "/")[0]
        var result = [String(text)]
        let last = source.network.address.lastAddress(prefixLength: source.network.prefixLength)
        if last != source.network.address { result.append(last.description) }
        if text.contains(":") && source.network.address.isIPv4 {
            result.append(source.network.address.description)
        }
        return result
    }

    /// The record the database must return: the most specific source network holding
    /// the address (later entries win a tie, as the writer inserts in order).
    static func expected(_ address: IPAddress, in sources: [SourceNetwork]) -> SourceNetwork? {
        var best: SourceNetwork?
        for source in sources where source.network.contains(canonical(address)) {
            if best == nil || source.network.prefixLength >= best!.network.prefixLength { best = source }
        }
        return best
    }

    static func path(_ dict: [String: Any], _ keys: String...) -> Any? {
        var current: Any? = dict
        for key in keys {
            if let index = Int(key), let array = current as? [Any] {
                current = index < array.count ? array[index] : nil
            } else {
                current = (current as? [String: Any])?[key]
            }
        }
        return current
    }

    func check(database: String, source: String, compare: (GeoIPRecord?, [String: Any], String) -> Void) throws -> Int {
        let db = try GeoIPDatabase(path: try TestData.require("maxmind/test-data/\(database).mmdb"))
        let sources = try Self.loadSource(source)
        var probed = 0
        var v4 = 0
        for network in sources {
            for probe in Self.probes(network) {
                let address = try #require(IPAddress(probe))
                if !probe.contains(":") { v4 += 1 }
                let want = try #require(Self.expected(address, in: sources))
                let got = try db.lookup(address)
                compare(got, want.record, "\(probe) (network \(want.key))")
                probed += 1
            }
        }
        print("\(database): \(probed) addresses (\(v4) in IPv4 notation) checked against \(sources.count) source networks")
        #expect(v4 > 0 && v4 < probed, "\(database): both address families must be probed")
        return probed
    }

    @Test func cityDatabaseMatchesSourceData() throws {
        let probed = try check(database: "GeoIP2-City-Test", source: "GeoIP2-City-Test") { got, want, label in
            #expect(got != nil, "\(label): not found")
            #expect(got?.city == Self.path(want, "city", "names", "en") as? String, "\(label): city")
            #expect(got?.subdivision == Self.path(want, "subdivisions", "0", "names", "en") as? String, "\(label): subdivision")
            #expect(got?.subdivisionISOCode == Self.path(want, "subdivisions", "0", "iso_code") as? String, "\(label): subdivision iso")
            #expect(got?.countryISOCode == Self.path(want, "country", "iso_code") as? String, "\(label): country")
            #expect(got?.latitude == (Self.path(want, "location", "latitude") as? NSNumber)?.doubleValue, "\(label): latitude")
            #expect(got?.longitude == (Self.path(want, "location", "longitude") as? NSNumber)?.doubleValue, "\(label): longitude")
            #expect(got?.accuracyRadiusKm == (Self.path(want, "location", "accuracy_radius") as? NSNumber)?.doubleValue, "\(label): accuracy")
        }
        #expect(probed > 400)
    }

    @Test func asnDatabaseMatchesSourceData() throws {
        let probed = try check(database: "GeoLite2-ASN-Test", source: "GeoLite2-ASN-Test") { got, want, label in
            #expect(got != nil, "\(label): not found")
            #expect(got?.asn == (want["autonomous_system_number"] as? NSNumber)?.int64Value, "\(label): asn")
            #expect(got?.asOrganization == want["autonomous_system_organization"] as? String, "\(label): org")
            #expect(got?.city == nil)
        }
        #expect(probed > 1000)
    }

    @Test func anonymousIPDatabaseMatchesSourceData() throws {
        let probed = try check(database: "GeoIP2-Anonymous-IP-Test", source: "GeoIP2-Anonymous-IP-Test") { got, want, label in
            #expect(got != nil, "\(label): not found")
            #expect(got?.isAnonymous == want["is_anonymous"] as? Bool, "\(label): is_anonymous")
            #expect(got?.isAnonymousVPN == want["is_anonymous_vpn"] as? Bool, "\(label): is_anonymous_vpn")
            #expect(got?.isTorExitNode == want["is_tor_exit_node"] as? Bool, "\(label): is_tor_exit_node")
            #expect(got?.isHostingProvider == want["is_hosting_provider"] as? Bool, "\(label): is_hosting_provider")
            #expect(got?.isPublicProxy == want["is_public_proxy"] as? Bool, "\(label): is_public_proxy")
            #expect(got?.isResidentialProxy == want["is_residential_proxy"] as? Bool, "\(label): is_residential_proxy")
        }
        #expect(probed > 20)
    }

    @Test func knownCityAnswers() throws {
        let db = try GeoIPDatabase(path: try TestData.require("maxmind/test-data/GeoIP2-City-Test.mmdb"))
        #expect(db.databaseType == "GeoIP2-City")
        let london = try #require(try db.lookup("81.2.69.142"))
        #expect(london.city == "London")
        #expect(london.subdivision == "England")
        #expect(london.subdivisionISOCode == "ENG")
        #expect(london.countryISOCode == "GB")
        #expect(try db.lookup("::ffff:81.2.69.142") == london)
        #expect(try db.lookup("89.160.20.112")?.city == "Linköping")
        #expect(try db.lookup("216.160.83.56")?.subdivision == "Washington")
        #expect(try db.lookup("10.0.0.1") == nil)
        #expect(try db.lookup("not an ip") == nil)
    }

    @Test func ipv4OnlyDatabaseAnswersNilForIPv6() throws {
        // The Country test DB is IPv6; use the City one for an IPv4 probe through v4-mapped
        // notation and check an IPv6-only address is simply absent, not an error.
        let db = try GeoIPDatabase(path: try TestData.require("maxmind/test-data/GeoIP2-Country-Test.mmdb"))
        #expect(try db.lookup("81.2.69.142")?.countryISOCode == "GB")
        #expect(try db.lookup("fe80::1") == nil)
    }

    @Test(arguments: ["GeoIP2-City-Test-Broken-Double-Format", "GeoIP2-City-Test-Invalid-Node-Count"])
    func brokenDatabaseGivesErrorNamingFile(name: String) throws {
        let path = try TestData.require("maxmind/test-data/\(name).mmdb")
        var caught: EnrichmentError?
        do {
            let db = try GeoIPDatabase(path: path)
            // Whichever address reaches the damage: probe the documented test networks.
            for probe in ["81.2.69.142", "2.125.160.216", "89.160.20.112", "216.160.83.56", "175.16.199.0",
                          "2001:218::", "1.1.1.1", "::1.2.3.4"] {
                _ = try db.lookup(probe)
            }
        } catch {
            caught = error
        }
        let error = try #require(caught, "\(name): no error at open or lookup")
        print("broken database \(name): \(error)")
        #expect(error.code == .corruptDatabase)
        #expect(error.message.contains(path))
    }

    @Test func garbageFileIsCorruptNamingTheFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-garbage-\(UUID().uuidString).mmdb").path
        try Data("this is not a MaxMind database\n".utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try GeoIPDatabase(path: path)
            Issue.record("garbage file opened")
        } catch {
            #expect(error.code == .corruptDatabase)
            #expect(error.message.contains(path))
        }
    }

    @Test func missingFileIsUnreadable() {
        #expect(throws: EnrichmentError.self) { try GeoIPDatabase(path: "/nonexistent/GeoLite2-City.mmdb") }
        do {
            _ = try GeoIPDatabase(path: "/nonexistent/GeoLite2-City.mmdb")
        } catch {
            #expect(error.code == .unreadableFile)
            #expect(error.message.contains("/nonexistent/GeoLite2-City.mmdb"))
        }
    }
}
