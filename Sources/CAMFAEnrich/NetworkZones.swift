/// Named sets of CIDRs ("intranet", "vpn", ...) and the longest-prefix match over them.
///
/// One hash table per prefix length in use, probed from the longest length down: a
/// configuration has a handful of distinct lengths, so a lookup is a few hash probes
/// regardless of how many networks are configured. When the same network appears in
/// two zones, the zone whose name sorts first wins, so the answer never depends on
/// dictionary order.
public struct NetworkZones: Sendable {
    private var tables: [(length: Int, zones: [IPAddress: String])] = []

    public init() {}

    /// Throws `invalidCIDR` naming the zone and the entry at fault.
    public init(_ zones: [String: [String]]) throws(EnrichmentError) {
        var byLength: [Int: [IPAddress: String]] = [:]
        for name in zones.keys.sorted() {
            guard !name.isEmpty else {
                throw EnrichmentError(.invalidCIDR, "network zone with an empty name")
            }
            for entry in zones[name]! {
                let trimmed = entry.trimmingWhitespace()
                guard let network = IPNetwork(cidr: trimmed) else {
                    throw EnrichmentError(
                        .invalidCIDR,
                        "network zone '\(name)': '\(entry)' is not a valid CIDR (expected a.b.c.d/0-32 or an IPv6 prefix /0-128, with no host bits set)"
                    )
                }
                if byLength[network.prefixLength, default: [:]][network.address] == nil {
                    byLength[network.prefixLength, default: [:]][network.address] = name
                }
            }
        }
        tables = byLength.keys.sorted(by: >).map { ($0, byLength[$0]!) }
    }

    public var isEmpty: Bool { tables.isEmpty }

    /// The zone of the most specific configured network that contains the address.
    public func zone(for address: IPAddress) -> String? {
        for table in tables {
            if let name = table.zones[address.masked(to: table.length)] { return name }
        }
        return nil
    }

    /// nil for text that is not an IP address.
    public func zone(for text: String) -> String? {
        guard let address = IPAddress(text) else { return nil }
        return zone(for: address)
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        var start = scalars.startIndex
        var end = scalars.endIndex
        while start < end, scalars[start].properties.isWhitespace { start = scalars.index(after: start) }
        while end > start, scalars[scalars.index(before: end)].properties.isWhitespace { end = scalars.index(before: end) }
        if start == scalars.startIndex && end == scalars.endIndex { return self }
        return String(scalars[start..<end])
    }
}
