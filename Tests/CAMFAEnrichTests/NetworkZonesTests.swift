import CAMFAEnrich
import Testing

@Suite("Network zones")
struct NetworkZonesTests {
    @Test func hostRouteMatchesOnlyThatAddress() throws {
        let zones = try NetworkZones(["admin": ["192.0.2.7/32"]])
        #expect(zones.zone(for: "192.0.2.7") == "admin")
        #expect(zones.zone(for: "192.0.2.6") == nil)
        #expect(zones.zone(for: "192.0.2.8") == nil)
    }

    @Test func ipv4DefaultRouteCoversAllIPv4ButNotIPv6() throws {
        let zones = try NetworkZones(["internet4": ["0.0.0.0/0"]])
        #expect(zones.zone(for: "0.0.0.0") == "internet4")
        #expect(zones.zone(for: "255.255.255.255") == "internet4")
        #expect(zones.zone(for: "2001:db8::1") == nil)
    }

    @Test func ipv6DefaultRouteCoversEverything() throws {
        let zones = try NetworkZones(["any": ["::/0"]])
        #expect(zones.zone(for: "2001:db8::1") == "any")
        #expect(zones.zone(for: "10.1.2.3") == "any")
    }

    @Test func ipv6HostRoute() throws {
        let zones = try NetworkZones(["bastion": ["2001:db8::42/128"], "lab": ["2001:db8::/64"]])
        #expect(zones.zone(for: "2001:db8::42") == "bastion")
        #expect(zones.zone(for: "2001:0db8:0000:0000:0000:0000:0000:0042") == "bastion")
        #expect(zones.zone(for: "2001:db8::43") == "lab")
        #expect(zones.zone(for: "2001:db8:0:1::42") == nil)
    }

    @Test func longestPrefixWins() throws {
        let zones = try NetworkZones([
            "intranet": ["10.0.0.0/8"],
            "vpn": ["10.8.0.0/16"],
            "quarantine": ["10.8.3.0/24"],
        ])
        #expect(zones.zone(for: "10.1.1.1") == "intranet")
        #expect(zones.zone(for: "10.8.1.1") == "vpn")
        #expect(zones.zone(for: "10.8.3.200") == "quarantine")
        #expect(zones.zone(for: "10.8.4.0") == "vpn")
        #expect(zones.zone(for: "11.0.0.0") == nil)
    }

    @Test func sameNetworkInTwoZonesResolvesByNameDeterministically() throws {
        let zones = try NetworkZones(["b-zone": ["172.16.0.0/12"], "a-zone": ["172.16.0.0/12"]])
        #expect(zones.zone(for: "172.20.0.1") == "a-zone")
    }

    @Test func ipv4MappedIPv6MatchesIPv4Zones() throws {
        let zones = try NetworkZones(["intranet": ["10.0.0.0/8"], "v6": ["::ffff:192.168.0.0/112"]])
        #expect(zones.zone(for: "::ffff:10.20.30.40") == "intranet")
        #expect(zones.zone(for: "::FFFF:10.20.30.40") == "intranet")
        #expect(zones.zone(for: "192.168.5.5") == "v6")
        #expect(zones.zone(for: "::ffff:11.0.0.1") == nil)
    }

    @Test(arguments: [
        "10.0.0.0/33", "10.0.0.1/8", "10.0.0/8", "300.0.0.0/8", "10.0.0.0/", "10.0.0.0/-1",
        "2001:db8::/129", "2001:db8::1/64", "fe80::1%eth0/128", "", "intranet", "10.0.0.0/8/8", "10.0.0.0/ 8",
    ])
    func invalidCIDRNamesZoneAndEntry(entry: String) {
        do {
            _ = try NetworkZones(["office": ["192.168.0.0/16", entry]])
            Issue.record("'\(entry)' was accepted")
        } catch {
            #expect(error.code == .invalidCIDR)
            #expect(error.message.contains("'office'"))
            #expect(error.message.contains("'\(entry)'"))
        }
    }

    @Test func notAnAddressHasNoZone() throws {
        let zones = try NetworkZones(["any": ["::/0"]])
        #expect(zones.zone(for: "example.com") == nil)
        #expect(zones.zone(for: "1.2.3") == nil)
        #expect(zones.zone(for: "") == nil)
    }

    @Test func addressRoundTripsThroughText() throws {
        #expect(IPAddress("10.1.2.3")?.description == "10.1.2.3")
        #expect(IPAddress("::ffff:10.1.2.3")?.description == "10.1.2.3")
        #expect(IPAddress("2001:DB8::1")?.description == "2001:db8::1")
        #expect(IPNetwork(cidr: "10.0.0.0/8")?.description == "10.0.0.0/8")
        let net = try #require(IPNetwork(cidr: "10.0.0.0/8"))
        #expect(net.address.lastAddress(prefixLength: net.prefixLength).description == "10.255.255.255")
    }
}

@Suite("LRU cache")
struct LRUCacheTests {
    @Test func evictsLeastRecentlyUsed() {
        var cache = LRUCache<String, Int>(capacity: 2)
        cache.insert(1, forKey: "a")
        cache.insert(2, forKey: "b")
        #expect(cache.value(forKey: "a") == 1)  // a is now the most recent
        cache.insert(3, forKey: "c")            // evicts b
        #expect(cache.value(forKey: "b") == nil)
        #expect(cache.value(forKey: "a") == 1)
        #expect(cache.value(forKey: "c") == 3)
        #expect(cache.count == 2)
        #expect(cache.hits == 3)
        #expect(cache.misses == 1)
    }

    @Test func updateDoesNotGrow() {
        var cache = LRUCache<Int, Int>(capacity: 3)
        for i in 0..<10 { cache.insert(i, forKey: i % 2) }
        #expect(cache.count == 2)
        #expect(cache.value(forKey: 0) == 8)
        #expect(cache.value(forKey: 1) == 9)
    }

    @Test func matchesAReferenceModelUnderRandomUse() {
        var cache = LRUCache<Int, Int>(capacity: 8)
        var model: [(Int, Int)] = []  // most recent last
        var rng = SystemRandomNumberGenerator()
        for step in 0..<5000 {
            let key = Int.random(in: 0..<20, using: &rng)
            if Bool.random(using: &rng) {
                cache.insert(step, forKey: key)
                model.removeAll { $0.0 == key }
                model.append((key, step))
                if model.count > 8 { model.removeFirst() }
            } else {
                let expected = model.first { $0.0 == key }?.1
                #expect(cache.value(forKey: key) == expected)
                if let i = model.firstIndex(where: { $0.0 == key }) { model.append(model.remove(at: i)) }
            }
        }
    }

    @Test func zeroCapacityStoresNothing() {
        var cache = LRUCache<Int, Int>(capacity: 0)
        cache.insert(1, forKey: 1)
        #expect(cache.value(forKey: 1) == nil)
        #expect(cache.count == 0)
    }
}
