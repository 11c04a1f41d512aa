import ArgumentParser
import CAMFACore
import CAMFAEnrich
import Foundation

/// `camfa-bench enrich`: enrichment throughput on one core with a warm cache.
///
/// The workload imitates production repetition: user agents and client addresses are
/// drawn from Zipf distributions (a few very common clients, a long tail), the UAs
/// from uap-core's conformance files and the addresses from inside the networks of
/// MaxMind's test City database. All draws are made before the clock starts, with a
/// fixed seed, so two runs measure the same work.
struct EnrichBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enrich",
        abstract: "Measure enrichment events/s on one core (GeoIP + ASN + UA + zones, warm caches)."
    )

    @Option(help: "Events in the timed run.")
    var events: Int = 2_000_000

    @Option(help: "Test data directory (uap-core/, maxmind/).")
    var testdata: String = "../shared/testdata"

    @Option(name: .customLong("city-db"), help: "City database (default: the MaxMind test City DB under --testdata).")
    var cityDB: String?

    @Option(name: .customLong("asn-db"), help: "ASN database (default: the MaxMind test ASN DB under --testdata; 'none' to skip).")
    var asnDB: String?

    @Option(help: "uap-core regexes.yaml (default: under --testdata).")
    var rules: String?

    @Option(name: .customLong("distinct-uas"), help: "Distinct user agents in the workload.")
    var distinctUAs: Int = 2_000

    @Option(name: .customLong("distinct-ips"), help: "Distinct client addresses in the workload.")
    var distinctIPs: Int = 5_000

    @Option(help: "Zipf exponent for both draws (1.0: the classic web-traffic skew).")
    var zipf: Double = 1.0

    @Option(name: .customLong("ua-cache"), help: "User-agent cache capacity.")
    var uaCache: Int = 10_000

    @Option(name: .customLong("ip-cache"), help: "Address cache capacity.")
    var ipCache: Int = 10_000

    func validate() throws {
        guard events > 0 else { throw ValidationError("--events must be positive") }
        guard distinctUAs > 0, distinctIPs > 0 else { throw ValidationError("--distinct-uas and --distinct-ips must be positive") }
        guard zipf >= 0 else { throw ValidationError("--zipf must be ≥ 0") }
    }

    func run() throws {
        let dir = testdata.hasSuffix("/") ? String(testdata.dropLast()) : testdata
        let cityPath = cityDB ?? "\(dir)/maxmind/test-data/GeoIP2-City-Test.mmdb"
        let asnPath = asnDB == "none" ? nil : (asnDB ?? "\(dir)/maxmind/test-data/GeoLite2-ASN-Test.mmdb")
        let rulesPath = rules ?? "\(dir)/uap-core/regexes.yaml"

        let loadStart = DispatchTime.now()
        let enricher: Enricher
        do {
            enricher = try Enricher(configuration: EnrichmentConfiguration(
                cityDatabase: cityPath, asnDatabase: asnPath, anonymousIPDatabase: nil,
                userAgentRules: rulesPath, zones: ["intranet": ["10.0.0.0/8", "fd00::/8"], "vpn": ["10.8.0.0/16"]],
                userAgentCacheSize: uaCache, ipCacheSize: ipCache
            ))
        } catch {
            throw ValidationError(error.message)
        }
        let loadSeconds = seconds(since: loadStart)
        for warning in enricher.warnings { print("warning: \(warning)") }

        let userAgents = try Self.loadUserAgents(dir: dir, count: distinctUAs)
        let addresses = try Self.loadAddresses(dir: dir, count: distinctIPs)
        var rng = SplitMix64(seed: 0xCA3F_A11)
        let uaDraw = ZipfSampler(count: userAgents.count, exponent: zipf)
        let ipDraw = ZipfSampler(count: addresses.count, exponent: zipf)
        let uaIndex = (0..<events).map { _ in Int32(uaDraw.sample(&rng)) }
        let ipIndex = (0..<events).map { _ in Int32(ipDraw.sample(&rng)) }

        // Cold pass over every distinct UA: what an uncached parse costs.
        let coldStart = CPUClock.now()
        for ua in userAgents {
            var event = UEBAEvent(requestDate: 0, ua: ua, originalIdentity: "bench")
            enricher.enrich(&event)
        }
        let coldSeconds = CPUClock.now() - coldStart
        // Warm the address cache the same way, then measure from a clean count.
        for ip in addresses {
            var event = UEBAEvent(requestDate: 0, ip: ip, originalIdentity: "bench")
            enricher.enrich(&event)
        }
        enricher.resetCacheStatistics()

        // The same loop without enrich(): what building and dropping the events costs,
        // so enrichment's own share can be told apart from the decoder's.
        var checksum = 0
        let baselineStart = CPUClock.now()
        for i in 0..<events {
            let event = UEBAEvent(
                requestDate: Int64(i), ip: addresses[Int(ipIndex[i])], ua: userAgents[Int(uaIndex[i])],
                originalIdentity: "bench"
            )
            if event.ip != nil { checksum &+= 1 }
        }
        let baseline = CPUClock.now() - baselineStart

        var located = 0
        var classified = 0
        let wallStart = DispatchTime.now()
        let start = CPUClock.now()
        for i in 0..<events {
            var event = UEBAEvent(
                requestDate: Int64(i), ip: addresses[Int(ipIndex[i])], ua: userAgents[Int(uaIndex[i])],
                originalIdentity: "bench"
            )
            enricher.enrich(&event)
            if event.country != nil { located &+= 1 }
            if event.deviceType != nil { classified &+= 1 }
        }
        let elapsed = CPUClock.now() - start
        let wall = seconds(since: wallStart)

        print("rules + databases loaded in \(format(loadSeconds, 2)) s")
        print("workload: \(events) events, \(userAgents.count) distinct UAs, \(addresses.count) distinct IPs, Zipf s=\(zipf)")
        print("cold UA parse: \(format(Double(userAgents.count) / coldSeconds, 0)) UAs/s (\(format(coldSeconds * 1e6 / Double(userAgents.count), 1)) µs CPU each, uncached)")
        // CPU time of this thread, not wall time: on a shared machine the wall clock
        // measures the neighbours as much as this code.
        let enrichOnly = max(elapsed - baseline, 1e-9)
        print("warm, event construction + enrich: \(format(Double(events) / elapsed, 0)) events/s per core (\(format(elapsed * 1e9 / Double(events), 0)) ns/event CPU; wall \(format(wall, 2)) s)")
        print("warm, enrich() alone:              \(format(Double(events) / enrichOnly, 0)) events/s per core (\(format(enrichOnly * 1e9 / Double(events), 0)) ns/event CPU; construction baseline \(format(baseline * 1e9 / Double(events), 0)) ns)")
        print("UA cache hit rate: \(format(enricher.userAgentCacheHitRate * 100, 2)) %, IP cache hit rate: \(format(enricher.ipCacheHitRate * 100, 2)) %")
        print("events with a country: \(located), with a device class: \(classified) (checksum \(checksum))")
    }

    private func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }

    private func format(_ value: Double, _ decimals: Int) -> String {
        String(format: "%.\(decimals)f", value)
    }

    /// The first `count` distinct user_agent_string values of test_ua, test_os and
    /// test_device, in that order: browsers first, as real traffic is mostly browsers.
    static func loadUserAgents(dir: String, count: Int) throws -> [String] {
        var seen = Set<String>()
        var result: [String] = []
        for file in ["test_ua.yaml", "test_os.yaml", "test_device.yaml"] where result.count < count {
            let path = "\(dir)/uap-core/\(file)"
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("cannot read \(path) (use --testdata)")
            }
            for line in text.split(separator: "\n") where result.count < count {
                guard let range = line.range(of: "user_agent_string: ") else { continue }
                var value = line[range.upperBound...]
                guard let quote = value.first, quote == "'" || quote == "\"", value.count >= 2 else { continue }
                value = value.dropFirst().dropLast()
                let ua = quote == "'" ? value.replacingOccurrences(of: "''", with: "'") : String(value)
                if seen.insert(ua).inserted { result.append(ua) }
            }
        }
        return result
    }

    /// Addresses inside the networks of the City test database's source data (first,
    /// last and evenly spread addresses of each), so most lookups find a record, plus
    /// a share of private addresses that only the zones know.
    static func loadAddresses(dir: String, count: Int) throws -> [String] {
        let path = "\(dir)/maxmind/source-data/GeoIP2-City-Test.json"
        guard let data = FileManager.default.contents(atPath: path),
              let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw ValidationError("cannot read \(path) (use --testdata)")
        }
        let networks = list.flatMap(\.keys).compactMap { IPNetwork(cidr: $0) }
        guard !networks.isEmpty else { throw ValidationError("\(path): no networks") }
        var result: [String] = []
        var seen = Set<IPAddress>()
        var step: UInt64 = 0
        while result.count < count && step < UInt64(count) * 4 {
            if step % 10 == 9 {
                // One in ten: an intranet client.
                let address = IPAddress(ipv4: 0x0A00_0000 | UInt32(truncatingIfNeeded: step &* 2_654_435_761) & 0x00FF_FFFF)
                if seen.insert(address).inserted { result.append(address.description) }
            } else {
                let network = networks[Int(step % UInt64(networks.count))]
                let hostBits = 128 - network.prefixLength
                let offset = hostBits >= 64 ? step &* 0x9E37_79B9_7F4A_7C15 : (step &* 0x9E37_79B9) & ((1 << UInt64(hostBits)) &- 1)
                var address = network.address
                address.low |= hostBits >= 64 ? offset : offset & ((1 << UInt64(hostBits)) &- 1)
                if seen.insert(address).inserted { result.append(address.description) }
            }
            step += 1
        }
        return result
    }
}

/// This thread's CPU time in seconds.
enum CPUClock {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// Inverse-CDF Zipf sampling over ranks 0..<count (rank 0 most frequent).
struct ZipfSampler {
    private var cdf: [Double]

    init(count: Int, exponent: Double) {
        var total = 0.0
        cdf = (1...count).map { rank in
            total += 1 / pow(Double(rank), exponent)
            return total
        }
        cdf = cdf.map { $0 / total }
    }

    func sample(_ rng: inout SplitMix64) -> Int {
        let u = Double(rng.next() >> 11) / Double(1 << 53)
        var low = 0
        var high = cdf.count - 1
        while low < high {
            let mid = (low + high) / 2
            if cdf[mid] < u { low = mid + 1 } else { high = mid }
        }
        return low
    }
}

/// A tiny seeded generator, so the workload is the same on every run and machine.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
