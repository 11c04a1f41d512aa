import CMaxMindDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What one MMDB database says about an address. City/Country, ASN and Anonymous-IP
/// databases each fill their own fields; the rest stay nil.
public struct GeoIPRecord: Sendable, Equatable {
    public var city: String?
    /// First (largest) subdivision: the seed's "province".
    public var subdivision: String?
    public var subdivisionISOCode: String?
    public var countryISOCode: String?
    public var countryName: String?
    public var latitude: Double?
    public var longitude: Double?
    public var accuracyRadiusKm: Double?
    public var asn: Int64?
    public var asOrganization: String?
    public var isAnonymous: Bool?
    public var isAnonymousVPN: Bool?
    public var isTorExitNode: Bool?
    public var isHostingProvider: Bool?
    public var isPublicProxy: Bool?
    public var isResidentialProxy: Bool?
    /// Prefix length of the database network that matched, in the 128-bit space for
    /// IPv6 databases (IPv4 addresses sit under ::/96) or 32-bit for IPv4 ones.
    public var networkPrefixLength: Int

    public init(networkPrefixLength: Int) {
        self.networkPrefixLength = networkPrefixLength
    }

    /// Fields of `other` win where set.
    public mutating func merge(_ other: GeoIPRecord) {
        city = other.city ?? city
        subdivision = other.subdivision ?? subdivision
        subdivisionISOCode = other.subdivisionISOCode ?? subdivisionISOCode
        countryISOCode = other.countryISOCode ?? countryISOCode
        countryName = other.countryName ?? countryName
        latitude = other.latitude ?? latitude
        longitude = other.longitude ?? longitude
        accuracyRadiusKm = other.accuracyRadiusKm ?? accuracyRadiusKm
        asn = other.asn ?? asn
        asOrganization = other.asOrganization ?? asOrganization
        isAnonymous = other.isAnonymous ?? isAnonymous
        isAnonymousVPN = other.isAnonymousVPN ?? isAnonymousVPN
        isTorExitNode = other.isTorExitNode ?? isTorExitNode
        isHostingProvider = other.isHostingProvider ?? isHostingProvider
        isPublicProxy = other.isPublicProxy ?? isPublicProxy
        isResidentialProxy = other.isResidentialProxy ?? isResidentialProxy
    }
}

/// A MaxMind DB file opened with libmaxminddb (memory-mapped). Lookups only read the
/// mapping, so one instance can be shared by every thread.
public final class GeoIPDatabase: @unchecked Sendable {
    public let path: String
    /// The metadata's database_type, e.g. "GeoIP2-City", "GeoLite2-ASN".
    public let databaseType: String
    public let ipVersion: Int

    private let mmdb: UnsafeMutablePointer<MMDB_s>
    private let paths: LookupPaths
    private let kind: Kind

    /// Throws `unreadableFile` when the file cannot be opened and `corruptDatabase`
    /// when libmaxminddb rejects its contents; both name the file.
    public init(path: String) throws(EnrichmentError) {
        self.path = path
        mmdb = .allocate(capacity: 1)
        let status = MMDB_open(path, UInt32(MMDB_MODE_MMAP), mmdb)
        guard status == MMDB_SUCCESS else {
            mmdb.deallocate()
            let reason = String(cString: MMDB_strerror(status))
            if status == MMDB_FILE_OPEN_ERROR || status == MMDB_IO_ERROR {
                throw EnrichmentError(.unreadableFile, "\(path): cannot open MaxMind database: \(reason)")
            }
            throw EnrichmentError(.corruptDatabase, "\(path): not a valid MaxMind database: \(reason)")
        }
        databaseType = mmdb.pointee.metadata.database_type.map { String(cString: $0) } ?? ""
        ipVersion = Int(mmdb.pointee.metadata.ip_version)
        paths = LookupPaths()
        kind = Kind(databaseType: databaseType)
    }

    private struct Kind {
        var hasLocation = true
        var hasASN = true
        var hasAnonymizer = true

        /// MaxMind names its products in database_type; anything unrecognised (a
        /// third-party or merged database) gets every field tried.
        init(databaseType: String) {
            let type = databaseType.lowercased()
            if type.contains("asn") {
                hasLocation = false
                hasAnonymizer = false
            } else if type.contains("anonymous") {
                hasLocation = false
                hasASN = false
            } else if type.contains("city") || type.contains("country") {
                hasASN = type.contains("enterprise") || type.contains("isp")
                hasAnonymizer = false
            }
        }
    }

    deinit {
        MMDB_close(mmdb)
        mmdb.deallocate()
    }

    /// nil when the address is not in the database. Throws `corruptDatabase` naming
    /// the file when the search tree or data section is damaged.
    public func lookup(_ address: IPAddress) throws(EnrichmentError) -> GeoIPRecord? {
        var mmdbError: Int32 = 0
        var result: MMDB_lookup_result_s
        if let v4 = address.ipv4Value {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_addr.s_addr = v4.bigEndian
            result = withUnsafePointer(to: &sin) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { MMDB_lookup_sockaddr(mmdb, $0, &mmdbError) }
            }
        } else {
            if ipVersion == 4 { return nil }
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { raw in
                for i in 0..<8 { raw[i] = UInt8(truncatingIfNeeded: address.high >> UInt64(56 - 8 * i)) }
                for i in 0..<8 { raw[8 + i] = UInt8(truncatingIfNeeded: address.low >> UInt64(56 - 8 * i)) }
            }
            result = withUnsafePointer(to: &sin6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { MMDB_lookup_sockaddr(mmdb, $0, &mmdbError) }
            }
        }
        if mmdbError == MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR { return nil }
        guard mmdbError == MMDB_SUCCESS else { throw corrupt(mmdbError, address) }
        guard result.found_entry else { return nil }

        var record = GeoIPRecord(networkPrefixLength: Int(result.netmask))
        var entry = result.entry
        // Only the fields this kind of database carries: each path is a walk through
        // the record's maps, and this runs on every uncached event.
        if kind.hasLocation {
            try readLocation(&entry, &record, address)
        }
        if kind.hasASN {
            record.asn = try integer(&entry, paths.asn, address)
            record.asOrganization = try string(&entry, paths.asOrganization, address)
        }
        if kind.hasAnonymizer {
            record.isAnonymous = try bool(&entry, paths.isAnonymous, address)
            record.isAnonymousVPN = try bool(&entry, paths.isAnonymousVPN, address)
            record.isTorExitNode = try bool(&entry, paths.isTorExitNode, address)
            record.isHostingProvider = try bool(&entry, paths.isHostingProvider, address)
            record.isPublicProxy = try bool(&entry, paths.isPublicProxy, address)
            record.isResidentialProxy = try bool(&entry, paths.isResidentialProxy, address)
        }
        return record
    }

    private func readLocation(_ entry: inout MMDB_entry_s, _ record: inout GeoIPRecord, _ address: IPAddress) throws(EnrichmentError) {
        record.city = try string(&entry, paths.cityName, address)
        record.subdivision = try string(&entry, paths.subdivisionName, address)
        record.subdivisionISOCode = try string(&entry, paths.subdivisionISO, address)
        record.countryISOCode = try string(&entry, paths.countryISO, address)
        record.countryName = try string(&entry, paths.countryName, address)
        record.latitude = try double(&entry, paths.latitude, address)
        record.longitude = try double(&entry, paths.longitude, address)
        record.accuracyRadiusKm = try double(&entry, paths.accuracyRadius, address)
    }

    /// Looks up a spread of addresses (both families, well-known public ranges and the
    /// documented MaxMind test networks) and decodes their records, so that damage in
    /// the commonly hit parts of a file is reported at startup, not on the first event.
    /// libmaxminddb offers no full verification; damage elsewhere still surfaces at
    /// lookup time.
    public func selfCheck() throws(EnrichmentError) {
        for probe in Self.selfCheckProbes {
            guard let address = IPAddress(probe) else { continue }
            _ = try lookup(address)
        }
    }

    static let selfCheckProbes = [
        "1.1.1.1", "8.8.8.8", "9.9.9.9", "23.0.0.1", "81.2.69.142", "89.160.20.112", "175.16.199.0",
        "216.160.83.56", "2.125.160.216", "101.0.0.1", "185.0.0.1", "200.0.0.1",
        "2001:4860:4860::8888", "2606:4700::1", "2a00:1450::1", "2001:218::1", "2400::1", "::1.2.3.4",
    ]

    /// nil for text that is not an IP literal, as for an address not in the database.
    public func lookup(_ text: String) throws(EnrichmentError) -> GeoIPRecord? {
        guard let address = IPAddress(text) else { return nil }
        return try lookup(address)
    }

    private func corrupt(_ status: Int32, _ address: IPAddress) -> EnrichmentError {
        EnrichmentError(
            .corruptDatabase,
            "\(path): corrupt MaxMind database (lookup of \(address) failed: \(String(cString: MMDB_strerror(status))))"
        )
    }

    private func value(
        _ entry: inout MMDB_entry_s, _ path: LookupPath, _ address: IPAddress
    ) throws(EnrichmentError) -> MMDB_entry_data_s? {
        var data = MMDB_entry_data_s()
        let status = MMDB_aget_value(&entry, &data, path.pointer)
        // A path the record does not have is normal (a country-only network has no
        // city); anything else means the data section cannot be trusted.
        if status == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR { return nil }
        guard status == MMDB_SUCCESS else { throw corrupt(status, address) }
        return data.has_data ? data : nil
    }

    private func string(_ entry: inout MMDB_entry_s, _ path: LookupPath, _ address: IPAddress) throws(EnrichmentError) -> String? {
        guard let data = try value(&entry, path, address), data.type == UInt32(MMDB_DATA_TYPE_UTF8_STRING),
              let base = data.utf8_string else { return nil }
        let bytes = UnsafeRawBufferPointer(start: base, count: Int(data.data_size))
        return String(decoding: bytes, as: UTF8.self)
    }

    private func double(_ entry: inout MMDB_entry_s, _ path: LookupPath, _ address: IPAddress) throws(EnrichmentError) -> Double? {
        guard let data = try value(&entry, path, address) else { return nil }
        switch Int32(data.type) {
        case MMDB_DATA_TYPE_DOUBLE: return data.double_value
        case MMDB_DATA_TYPE_FLOAT: return Double(data.float_value)
        case MMDB_DATA_TYPE_UINT16: return Double(data.uint16)
        case MMDB_DATA_TYPE_UINT32: return Double(data.uint32)
        case MMDB_DATA_TYPE_INT32: return Double(data.int32)
        default: return nil
        }
    }

    private func integer(_ entry: inout MMDB_entry_s, _ path: LookupPath, _ address: IPAddress) throws(EnrichmentError) -> Int64? {
        guard let data = try value(&entry, path, address) else { return nil }
        switch Int32(data.type) {
        case MMDB_DATA_TYPE_UINT16: return Int64(data.uint16)
        case MMDB_DATA_TYPE_UINT32: return Int64(data.uint32)
        case MMDB_DATA_TYPE_INT32: return Int64(data.int32)
        case MMDB_DATA_TYPE_UINT64: return Int64(exactly: data.uint64)
        default: return nil
        }
    }

    private func bool(_ entry: inout MMDB_entry_s, _ path: LookupPath, _ address: IPAddress) throws(EnrichmentError) -> Bool? {
        guard let data = try value(&entry, path, address), data.type == UInt32(MMDB_DATA_TYPE_BOOLEAN) else { return nil }
        return data.boolean
    }
}

/// A NULL-terminated array of C strings for MMDB_aget_value (MMDB_get_value is
/// variadic, which Swift cannot call). Built once per database, not per lookup.
final class LookupPath: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<UnsafePointer<CChar>?>
    private let count: Int

    init(_ components: [String]) {
        count = components.count + 1
        pointer = .allocate(capacity: count)
        for (i, component) in components.enumerated() {
            pointer[i] = UnsafePointer(strdup(component))
        }
        pointer[components.count] = nil
    }

    deinit {
        for i in 0..<(count - 1) { free(UnsafeMutableRawPointer(mutating: pointer[i])) }
        pointer.deallocate()
    }
}

struct LookupPaths: Sendable {
    let cityName = LookupPath(["city", "names", "en"])
    let subdivisionName = LookupPath(["subdivisions", "0", "names", "en"])
    let subdivisionISO = LookupPath(["subdivisions", "0", "iso_code"])
    let countryISO = LookupPath(["country", "iso_code"])
    let countryName = LookupPath(["country", "names", "en"])
    let latitude = LookupPath(["location", "latitude"])
    let longitude = LookupPath(["location", "longitude"])
    let accuracyRadius = LookupPath(["location", "accuracy_radius"])
    let asn = LookupPath(["autonomous_system_number"])
    let asOrganization = LookupPath(["autonomous_system_organization"])
    let isAnonymous = LookupPath(["is_anonymous"])
    let isAnonymousVPN = LookupPath(["is_anonymous_vpn"])
    let isTorExitNode = LookupPath(["is_tor_exit_node"])
    let isHostingProvider = LookupPath(["is_hosting_provider"])
    let isPublicProxy = LookupPath(["is_public_proxy"])
    let isResidentialProxy = LookupPath(["is_residential_proxy"])
}
