/// One user-behaviour event: the seed's UEBA data object (field names as GenAuth uses
/// them) plus what enrichment adds. Producers send JSON (schemas/ueba-event.schema.json).
public struct UEBAEvent: Sendable {
    // Seed fields.
    public var appId: String?
    /// Event time, epoch milliseconds. All windows slide over this, never a wall clock.
    public var requestDate: Int64
    public var ip: String?
    public var city: String?
    public var province: String?
    public var country: String?
    public var ua: String?
    public var deviceType: String?
    public var systemType: String?
    public var browserType: String?
    /// The user's unique id in the business system; the partition key.
    public var originalIdentity: String
    public var behaviorType: String?
    public var behaviorResult: String?
    public var resourcesType: String?
    public var actionType: String?
    public var loginType: String?
    /// Free fields (`userGroups`, `roles`, `department`, `deviceId`, `sessionId`, ...):
    /// the event's `custom` object merged with any top-level field not named above.
    public var custom: ValueMap

    // Enrichment (CAMFAEnrich fills what the event lacks).
    public var geo: GeoInfo?
    public var userAgent: UserAgentInfo?
    /// Name of the configured network zone the IP falls in (longest prefix wins).
    public var networkZone: String?

    public init(
        appId: String? = nil, requestDate: Int64, ip: String? = nil, city: String? = nil,
        province: String? = nil, country: String? = nil, ua: String? = nil,
        deviceType: String? = nil, systemType: String? = nil, browserType: String? = nil,
        originalIdentity: String, behaviorType: String? = nil, behaviorResult: String? = nil,
        resourcesType: String? = nil, actionType: String? = nil, loginType: String? = nil,
        custom: ValueMap = ValueMap(), geo: GeoInfo? = nil, userAgent: UserAgentInfo? = nil,
        networkZone: String? = nil
    ) {
        self.appId = appId
        self.requestDate = requestDate
        self.ip = ip
        self.city = city
        self.province = province
        self.country = country
        self.ua = ua
        self.deviceType = deviceType
        self.systemType = systemType
        self.browserType = browserType
        self.originalIdentity = originalIdentity
        self.behaviorType = behaviorType
        self.behaviorResult = behaviorResult
        self.resourcesType = resourcesType
        self.actionType = actionType
        self.loginType = loginType
        self.custom = custom
        self.geo = geo
        self.userAgent = userAgent
        self.networkZone = networkZone
    }
}

/// What an IP resolves to (MMDB City/ASN/Anonymous-IP), or what the producer sent.
public struct GeoInfo: Sendable, Equatable {
    public var latitude: Double?
    public var longitude: Double?
    /// Kilometres, as MaxMind reports it.
    public var accuracyRadius: Double?
    public var asn: Int64?
    public var asOrganization: String?
    public var isAnonymous: Bool?
    public var isAnonymousVPN: Bool?
    public var isTorExitNode: Bool?
    public var isHostingProvider: Bool?

    public init(
        latitude: Double? = nil, longitude: Double? = nil, accuracyRadius: Double? = nil,
        asn: Int64? = nil, asOrganization: String? = nil, isAnonymous: Bool? = nil,
        isAnonymousVPN: Bool? = nil, isTorExitNode: Bool? = nil, isHostingProvider: Bool? = nil
    ) {
        self.latitude = latitude
        self.longitude = longitude
        self.accuracyRadius = accuracyRadius
        self.asn = asn
        self.asOrganization = asOrganization
        self.isAnonymous = isAnonymous
        self.isAnonymousVPN = isAnonymousVPN
        self.isTorExitNode = isTorExitNode
        self.isHostingProvider = isHostingProvider
    }
}

/// A parsed user agent (uap-core's families and versions plus a coarse device class).
public struct UserAgentInfo: Sendable, Equatable {
    public var browserFamily: String
    public var browserMajor: String?
    public var browserMinor: String?
    public var osFamily: String
    public var osMajor: String?
    public var deviceFamily: String
    public var deviceBrand: String?
    public var deviceModel: String?
    /// desktop, mobile, tablet, bot or other.
    public var deviceClass: String

    public init(
        browserFamily: String, browserMajor: String? = nil, browserMinor: String? = nil,
        osFamily: String, osMajor: String? = nil, deviceFamily: String,
        deviceBrand: String? = nil, deviceModel: String? = nil, deviceClass: String
    ) {
        self.browserFamily = browserFamily
        self.browserMajor = browserMajor
        self.browserMinor = browserMinor
        self.osFamily = osFamily
        self.osMajor = osMajor
        self.deviceFamily = deviceFamily
        self.deviceBrand = deviceBrand
        self.deviceModel = deviceModel
        self.deviceClass = deviceClass
    }
}

/// Events compare field by field; `custom` compares in insertion order, because the
/// order shows in every serialization of the event.
extension UEBAEvent: Equatable {
    public static func == (a: UEBAEvent, b: UEBAEvent) -> Bool {
        a.appId == b.appId && a.requestDate == b.requestDate && a.ip == b.ip && a.city == b.city
            && a.province == b.province && a.country == b.country && a.ua == b.ua
            && a.deviceType == b.deviceType && a.systemType == b.systemType
            && a.browserType == b.browserType && a.originalIdentity == b.originalIdentity
            && a.behaviorType == b.behaviorType && a.behaviorResult == b.behaviorResult
            && a.resourcesType == b.resourcesType && a.actionType == b.actionType
            && a.loginType == b.loginType && a.geo == b.geo && a.userAgent == b.userAgent
            && a.networkZone == b.networkZone && eventMapsEqual(a.custom, b.custom)
    }
}
