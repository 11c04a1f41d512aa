import CAMFACore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where enrichment data comes from. A nil path turns that enrichment off without a
/// warning (a deliberate choice); a path to a file that does not exist turns it off
/// with one warning (a fresh machine before `scripts/fetch-geodata.sh`).
public struct EnrichmentConfiguration: Sendable {
    public static let defaultCityDatabase = "/var/lib/GeoIP/GeoLite2-City.mmdb"
    public static let defaultASNDatabase = "/var/lib/GeoIP/GeoLite2-ASN.mmdb"
    public static let defaultAnonymousIPDatabase = "/var/lib/GeoIP/GeoIP2-Anonymous-IP.mmdb"
    public static let defaultUserAgentRules = "/usr/share/camfa/regexes.yaml"

    /// City or Country database: city, province, country, location.
    public var cityDatabase: String?
    public var asnDatabase: String?
    public var anonymousIPDatabase: String?
    /// uap-core regexes.yaml.
    public var userAgentRules: String?
    /// Zone name → CIDRs, e.g. ["intranet": ["10.0.0.0/8", "fd00::/8"]].
    public var zones: [String: [String]]
    /// false: fill only what the event lacks. true: resolved values replace what the
    /// producer sent (values the lookup cannot resolve never erase the producer's).
    public var overwrite: Bool
    public var userAgentCacheSize: Int
    /// Real traffic repeats client addresses as much as UAs; a hit skips the MMDB tree
    /// walk and the record decoding.
    public var ipCacheSize: Int

    public init(
        cityDatabase: String? = defaultCityDatabase,
        asnDatabase: String? = defaultASNDatabase,
        anonymousIPDatabase: String? = defaultAnonymousIPDatabase,
        userAgentRules: String? = defaultUserAgentRules,
        zones: [String: [String]] = [:],
        overwrite: Bool = false,
        userAgentCacheSize: Int = 10_000,
        ipCacheSize: Int = 10_000
    ) {
        self.cityDatabase = cityDatabase
        self.asnDatabase = asnDatabase
        self.anonymousIPDatabase = anonymousIPDatabase
        self.userAgentRules = userAgentRules
        self.zones = zones
        self.overwrite = overwrite
        self.userAgentCacheSize = userAgentCacheSize
        self.ipCacheSize = ipCacheSize
    }
}

/// The loaded, immutable part of enrichment: databases, compiled rules, zones. Load it
/// once and give each partition thread its own `Enricher` over it, since compiling
/// the UA rules takes far longer than anything per event.
public final class EnrichmentResources: Sendable {
    public let configuration: EnrichmentConfiguration
    public let cityDatabase: GeoIPDatabase?
    public let asnDatabase: GeoIPDatabase?
    public let anonymousIPDatabase: GeoIPDatabase?
    public let userAgentRules: UserAgentRules?
    public let zones: NetworkZones
    /// One line per enrichment that is off because its file is missing.
    public let warnings: [String]

    public init(configuration: EnrichmentConfiguration) throws(EnrichmentError) {
        self.configuration = configuration
        var warnings: [String] = []
        func database(_ path: String?, _ what: String) throws(EnrichmentError) -> GeoIPDatabase? {
            guard let path else { return nil }
            guard fileExists(path) else {
                warnings.append("\(what) database \(path) not found: \(what) enrichment is off")
                return nil
            }
            let database = try GeoIPDatabase(path: path)
            try database.selfCheck()
            return database
        }
        cityDatabase = try database(configuration.cityDatabase, "GeoIP city")
        asnDatabase = try database(configuration.asnDatabase, "ASN")
        anonymousIPDatabase = try database(configuration.anonymousIPDatabase, "anonymous-IP")
        if let path = configuration.userAgentRules {
            if fileExists(path) {
                userAgentRules = try UserAgentRules(path: path)
            } else {
                warnings.append("user-agent rules \(path) not found: user-agent enrichment is off")
                userAgentRules = nil
            }
        } else {
            userAgentRules = nil
        }
        zones = try NetworkZones(configuration.zones)
        self.warnings = warnings
    }
}

/// Fills an event's geo, ASN, anonymizer, user-agent and network-zone fields before the
/// engine sees it. Used from one thread (its caches are not shared).
public final class Enricher {
    public let resources: EnrichmentResources
    /// Startup warnings (missing files), then at most one per database whose lookups
    /// start failing at run time.
    public var warnings: [String]
    /// Lookups that hit a corrupt database since start; the event is left as it was.
    public private(set) var lookupErrors = 0

    private let overwrite: Bool
    private let userAgentParser: UserAgentParser?
    private var addressCache: LRUCache<String, ResolvedAddress>
    private var warnedDatabases = Set<String>()
    private let hasGeo: Bool

    public convenience init(configuration: EnrichmentConfiguration) throws(EnrichmentError) {
        try self.init(resources: EnrichmentResources(configuration: configuration))
    }

    public init(resources: EnrichmentResources) {
        self.resources = resources
        warnings = resources.warnings
        overwrite = resources.configuration.overwrite
        userAgentParser = resources.userAgentRules.map {
            UserAgentParser(rules: $0, cacheCapacity: resources.configuration.userAgentCacheSize)
        }
        addressCache = LRUCache(capacity: resources.configuration.ipCacheSize)
        hasGeo = resources.cityDatabase != nil || resources.asnDatabase != nil || resources.anonymousIPDatabase != nil
    }

    public var userAgentCacheHitRate: Double { userAgentParser?.cacheHitRate ?? 0 }
    public var ipCacheHitRate: Double { addressCache.hitRate }

    public func resetCacheStatistics() {
        userAgentParser?.resetCacheStatistics()
        addressCache.resetStatistics()
    }

    /// Everything an address resolves to, keyed by the address text as the event
    /// carries it: a hit skips parsing the address, the zone probes, the MMDB tree walk
    /// and the record decoding, and costs one retain.
    final class ResolvedAddress {
        let zone: String?
        let record: GeoIPRecord?
        /// The event's shape of `record`, for the common case of an event with no geo.
        let geo: GeoInfo?

        init(zone: String?, record: GeoIPRecord?) {
            self.zone = zone
            self.record = record
            if let record {
                let geo = GeoInfo(
                    latitude: record.latitude, longitude: record.longitude, accuracyRadius: record.accuracyRadiusKm,
                    asn: record.asn, asOrganization: record.asOrganization, isAnonymous: record.isAnonymous,
                    isAnonymousVPN: record.isAnonymousVPN, isTorExitNode: record.isTorExitNode,
                    isHostingProvider: record.isHostingProvider
                )
                self.geo = geo == GeoInfo() ? nil : geo
            } else {
                geo = nil
            }
        }
    }

    public func enrich(_ event: inout UEBAEvent) {
        if let ip = event.ip, let resolved = resolve(ip) {
            if overwrite || event.networkZone == nil, let zone = resolved.zone {
                event.networkZone = zone
            }
            if resolved.record != nil,
               overwrite || event.city == nil || event.province == nil || event.country == nil || event.geo == nil {
                apply(resolved, to: &event)
            }
        }
        if let ua = event.ua, let parser = userAgentParser,
           overwrite || event.userAgent == nil || event.deviceType == nil || event.systemType == nil || event.browserType == nil {
            let info = parser.resolve(ua).info
            fill(&event.deviceType, info.deviceClass)
            fill(&event.systemType, info.osFamily)
            fill(&event.browserType, info.browserFamily)
            if overwrite || event.userAgent == nil { event.userAgent = info }
        }
    }

    private func resolve(_ ip: String) -> ResolvedAddress? {
        if let cached = addressCache.value(forKey: ip) { return cached }
        guard let address = IPAddress(ip) else {
            // Not an address: remembered as such, so garbage is not re-parsed each time.
            let nothing = ResolvedAddress(zone: nil, record: nil)
            addressCache.insert(nothing, forKey: ip)
            return nothing
        }
        let zone = resources.zones.isEmpty ? nil : resources.zones.zone(for: address)
        guard hasGeo else {
            let resolved = ResolvedAddress(zone: zone, record: nil)
            addressCache.insert(resolved, forKey: ip)
            return resolved
        }
        let (record, failed) = geoRecord(address)
        let resolved = ResolvedAddress(zone: zone, record: record)
        // A failed lookup is not cached: the answer it should have had is unknown.
        if !failed { addressCache.insert(resolved, forKey: ip) }
        return resolved
    }

    /// The merged answer of every configured database (misses are cached too: an
    /// address absent from the databases stays absent until restart).
    private func geoRecord(_ address: IPAddress) -> (GeoIPRecord?, failed: Bool) {
        var merged: GeoIPRecord?
        var failed = false
        for database in [resources.cityDatabase, resources.asnDatabase, resources.anonymousIPDatabase] {
            guard let database else { continue }
            do {
                var record = try database.lookup(address)
                if database === resources.anonymousIPDatabase {
                    // Absence from the anonymous-IP list is MaxMind's way of saying "not
                    // known to be anonymous", so every flag is a definite false.
                    record = record ?? GeoIPRecord(networkPrefixLength: 0)
                    record!.isAnonymous = record!.isAnonymous ?? false
                    record!.isAnonymousVPN = record!.isAnonymousVPN ?? false
                    record!.isTorExitNode = record!.isTorExitNode ?? false
                    record!.isHostingProvider = record!.isHostingProvider ?? false
                    record!.isPublicProxy = record!.isPublicProxy ?? false
                    record!.isResidentialProxy = record!.isResidentialProxy ?? false
                }
                if let record {
                    if merged == nil { merged = record } else { merged!.merge(record) }
                }
            } catch {
                failed = true
                lookupErrors += 1
                if warnedDatabases.insert(database.path).inserted {
                    warnings.append(error.message)
                }
            }
        }
        return (merged, failed)
    }

    private func apply(_ resolved: ResolvedAddress, to event: inout UEBAEvent) {
        guard let record = resolved.record else { return }
        fill(&event.city, record.city)
        fill(&event.province, record.subdivision)
        fill(&event.country, record.countryISOCode)
        guard var geo = event.geo else {
            event.geo = resolved.geo
            return
        }
        fill(&geo.latitude, record.latitude)
        fill(&geo.longitude, record.longitude)
        fill(&geo.accuracyRadius, record.accuracyRadiusKm)
        fill(&geo.asn, record.asn)
        fill(&geo.asOrganization, record.asOrganization)
        fill(&geo.isAnonymous, record.isAnonymous)
        fill(&geo.isAnonymousVPN, record.isAnonymousVPN)
        fill(&geo.isTorExitNode, record.isTorExitNode)
        fill(&geo.isHostingProvider, record.isHostingProvider)
        event.geo = geo
    }

    @inline(__always)
    private func fill<T>(_ field: inout T?, _ value: T?) {
        guard let value else { return }
        if overwrite || field == nil { field = value }
    }
}

/// Only a path that does not exist counts as missing; anything else (permissions, a
/// directory) is left for the open to report as an error naming the file.
private func fileExists(_ path: String) -> Bool {
    var info = stat()
    if stat(path, &info) == 0 { return true }
    return errno != ENOENT && errno != ENOTDIR
}
