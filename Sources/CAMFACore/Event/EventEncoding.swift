/// The inverse of `UEBAEvent.decode`: `decode(json: e.jsonBytes()) == e` for every
/// event whose custom values are ones decoding produces (null, bool, int, finite
/// double, string, list, string-keyed map). Fields come in a fixed order, absent ones
/// are left out rather than written as null, and all custom fields go inside
/// `custom`, so the output is canonical: equal events give equal bytes.
extension UEBAEvent {
    public func jsonBytes() -> [UInt8] {
        var w = JSONWriter(reservingCapacity: 512)
        writeJSON(to: &w)
        return w.bytes
    }

    /// Writes the event as one value, e.g. inside a decision or a dead-letter record.
    public func writeJSON(to w: inout JSONWriter) {
        w.beginObject()
        if let appId { w.field("appId", appId) }
        w.field("requestDate", requestDate)
        if let ip { w.field("ip", ip) }
        if let city { w.field("city", city) }
        if let province { w.field("province", province) }
        if let country { w.field("country", country) }
        if let ua { w.field("ua", ua) }
        if let deviceType { w.field("deviceType", deviceType) }
        if let systemType { w.field("systemType", systemType) }
        if let browserType { w.field("browserType", browserType) }
        w.field("originalIdentity", originalIdentity)
        if let behaviorType { w.field("behaviorType", behaviorType) }
        if let behaviorResult { w.field("behaviorResult", behaviorResult) }
        if let resourcesType { w.field("resourcesType", resourcesType) }
        if let actionType { w.field("actionType", actionType) }
        if let loginType { w.field("loginType", loginType) }
        if let networkZone { w.field("networkZone", networkZone) }
        if let geo {
            w.key("geo")
            geo.writeJSON(to: &w)
        }
        if let userAgent {
            w.key("userAgent")
            userAgent.writeJSON(to: &w)
        }
        if !custom.isEmpty { w.field("custom", .map(custom)) }
        w.endObject()
    }
}

extension GeoInfo {
    public func writeJSON(to w: inout JSONWriter) {
        w.beginObject()
        if let latitude { w.field("latitude", latitude) }
        if let longitude { w.field("longitude", longitude) }
        if let accuracyRadius { w.field("accuracyRadius", accuracyRadius) }
        if let asn { w.field("asn", asn) }
        if let asOrganization { w.field("asOrganization", asOrganization) }
        if let isAnonymous { w.field("isAnonymous", isAnonymous) }
        if let isAnonymousVPN { w.field("isAnonymousVPN", isAnonymousVPN) }
        if let isTorExitNode { w.field("isTorExitNode", isTorExitNode) }
        if let isHostingProvider { w.field("isHostingProvider", isHostingProvider) }
        w.endObject()
    }
}

extension UserAgentInfo {
    public func writeJSON(to w: inout JSONWriter) {
        w.beginObject()
        w.field("browserFamily", browserFamily)
        if let browserMajor { w.field("browserMajor", browserMajor) }
        if let browserMinor { w.field("browserMinor", browserMinor) }
        w.field("osFamily", osFamily)
        if let osMajor { w.field("osMajor", osMajor) }
        w.field("deviceFamily", deviceFamily)
        if let deviceBrand { w.field("deviceBrand", deviceBrand) }
        if let deviceModel { w.field("deviceModel", deviceModel) }
        w.field("deviceClass", deviceClass)
        w.endObject()
    }
}

/// Strict structural equality for the values an event carries: same cases, maps with
/// the same keys in the same order (order is visible in every serialization), and
/// doubles compared by value. `Value` itself is left without `Equatable` here, since
/// its owners decide that; this is what event equality needs.
func eventValuesEqual(_ a: Value, _ b: Value) -> Bool {
    switch (a, b) {
    case (.null, .null): return true
    case (.bool(let x), .bool(let y)): return x == y
    case (.int(let x), .int(let y)): return x == y
    case (.uint(let x), .uint(let y)): return x == y
    case (.double(let x), .double(let y)): return x == y
    case (.string(let x), .string(let y)): return x == y
    case (.bytes(let x), .bytes(let y)): return x == y
    case (.duration(let x), .duration(let y)): return x == y
    case (.timestamp(let x), .timestamp(let y)): return x == y
    case (.type(let x), .type(let y)): return x == y
    case (.list(let x), .list(let y)):
        return x.count == y.count && zip(x, y).allSatisfy { eventValuesEqual($0, $1) }
    case (.map(let x), .map(let y)):
        return eventMapsEqual(x, y)
    case (.object(let x), .object(let y)):
        guard x.schema == y.schema else { return false }
        for i in x.schema.fieldNames.indices {
            switch (x.field(at: i), y.field(at: i)) {
            case (nil, nil): continue
            case (let p?, let q?): if !eventValuesEqual(p, q) { return false }
            default: return false
            }
        }
        return true
    default: return false
    }
}

func eventMapsEqual(_ a: ValueMap, _ b: ValueMap) -> Bool {
    guard a.count == b.count else { return false }
    return zip(a.keys, b.keys).allSatisfy { eventValuesEqual($0, $1) }
        && zip(a.values, b.values).allSatisfy { eventValuesEqual($0, $1) }
}
