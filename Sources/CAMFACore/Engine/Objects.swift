/// A host object whose fields are stored by schema index: the cheapest shape for
/// values the engine builds per event (inputs, statistics, policy results).
/// Immutable: its creator fills the values first, so reads need no exclusivity checks.
public final class SlotObject: ValueObject {
    public let schema: ObjectSchema
    public let values: [Value?]

    public init(schema: ObjectSchema, values: [Value?]) {
        self.schema = schema
        self.values = values
    }

    public func field(at index: Int) -> Value? { values[index] }
}

/// The schemas expressions are checked against. One place, so the README's field list,
/// the type checker and the runtime objects cannot drift apart.
public enum EngineSchemas {
    public static let geo = ObjectSchema(name: "camfa.Geo", fields: [
        ("latitude", .double), ("longitude", .double), ("accuracyRadius", .double),
        ("asn", .int), ("asOrganization", .string), ("isAnonymous", .bool),
        ("isAnonymousVPN", .bool), ("isTorExitNode", .bool), ("isHostingProvider", .bool),
    ])

    public static let userAgent = ObjectSchema(name: "camfa.UserAgent", fields: [
        ("browserFamily", .string), ("browserMajor", .string), ("browserMinor", .string),
        ("osFamily", .string), ("osMajor", .string), ("deviceFamily", .string),
        ("deviceBrand", .string), ("deviceModel", .string), ("deviceClass", .string),
    ])

    public static let network = ObjectSchema(name: "camfa.Network", fields: [("zone", .string)])

    /// Movement since the user's previous located event (see GeoVelocity).
    public static let velocity = ObjectSchema(name: "camfa.Velocity", fields: [
        ("distanceKm", .double), ("elapsedSeconds", .double), ("speedKmh", .double),
        ("minimumDistanceKm", .double), ("minimumSpeedKmh", .double),
        ("previousCity", .string), ("previousCountry", .string),
    ])

    /// Field order here is the index order EventObject serves.
    public static let event = ObjectSchema(name: "camfa.Event", fields: [
        ("appId", .string), ("requestDate", .int), ("ip", .string), ("city", .string),
        ("province", .string), ("country", .string), ("ua", .string), ("deviceType", .string),
        ("systemType", .string), ("browserType", .string), ("originalIdentity", .string),
        ("behaviorType", .string), ("behaviorResult", .string), ("resourcesType", .string),
        ("actionType", .string), ("loginType", .string), ("custom", .map(.string, .dyn)),
        ("geo", .object(geo)), ("userAgent", .object(userAgent)), ("network", .object(network)),
        ("velocity", .object(velocity)),
    ])

    /// The event as a task without the user's state sees it: `velocity` (movement since the
    /// user's previous location) needs that state, so it is not there. Same field indexes.
    public static let eventWithoutUserState = ObjectSchema(name: "camfa.Event", fields: event.fieldNames.indices.map { i in
        (event.fieldNames[i] == "velocity" ? "\u{1}velocity" : event.fieldNames[i], event.fieldTypes[i])
    })

    public static let userDevice = ObjectSchema(name: "camfa.UserDevice", fields: [
        // The event presents a device token trusted for its device (Factors.swift).
        ("trusted", .bool),
    ])

    public static let userMFA = ObjectSchema(name: "camfa.UserMFA", fields: [
        ("pending", .bool), ("pendingFlows", .list(.string)), ("lastVerified", .int),
        // Codes refused since the last accepted one, and the kinds of confirmed factors (Factors.swift).
        ("failures", .int), ("factors", .list(.string)),
    ])

    /// The user as the engine knows them from the event's custom fields and its own MFA state.
    public static let user = ObjectSchema(name: "camfa.User", fields: [
        ("id", .string), ("groups", .list(.string)), ("roles", .list(.string)),
        ("department", .string), ("mfa", .object(userMFA)), ("device", .object(userDevice)),
    ])
}

/// The current event as seen by expressions. A class so the engine allocates it once per
/// event and every policy shares it.
final class EventObject: ValueObject, @unchecked Sendable {
    let event: UEBAEvent
    let velocity: GeoVelocityValue?
    // Stored: every field selection checks it, and a static would cost a lazy-init check.
    let schema = EngineSchemas.event

    init(_ event: UEBAEvent, velocity: GeoVelocityValue?) {
        self.event = event
        self.velocity = velocity
    }

    /// `has(event.geo)` and the like, without building the nested object.
    func hasField(at index: Int) -> Bool {
        switch index {
        case 0: return event.appId != nil
        case 1, 10, 16: return true
        case 2: return event.ip != nil
        case 3: return event.city != nil
        case 4: return event.province != nil
        case 5: return event.country != nil
        case 6: return event.ua != nil
        case 7: return event.deviceType != nil
        case 8: return event.systemType != nil
        case 9: return event.browserType != nil
        case 11: return event.behaviorType != nil
        case 12: return event.behaviorResult != nil
        case 13: return event.resourcesType != nil
        case 14: return event.actionType != nil
        case 15: return event.loginType != nil
        case 17: return event.geo != nil
        case 18: return event.userAgent != nil
        case 19: return event.networkZone != nil
        case 20: return velocity != nil
        default: return false
        }
    }

    /// `event.custom.x`: read in place instead of copying `custom` into a Value.
    func lookup(mapField index: Int, key: String) -> Value?? {
        guard index == 16 else { return nil }
        return .some(event.custom.value(forString: key))
    }

    func field(at index: Int) -> Value? {
        // `event.x`, not a local copy of `event`: copying the struct retains every field.
        switch index {
        case 0: return event.appId.map(Value.string)
        case 1: return .int(event.requestDate)
        case 2: return event.ip.map(Value.string)
        case 3: return event.city.map(Value.string)
        case 4: return event.province.map(Value.string)
        case 5: return event.country.map(Value.string)
        case 6: return event.ua.map(Value.string)
        case 7: return event.deviceType.map(Value.string)
        case 8: return event.systemType.map(Value.string)
        case 9: return event.browserType.map(Value.string)
        case 10: return .string(event.originalIdentity)
        case 11: return event.behaviorType.map(Value.string)
        case 12: return event.behaviorResult.map(Value.string)
        case 13: return event.resourcesType.map(Value.string)
        case 14: return event.actionType.map(Value.string)
        case 15: return event.loginType.map(Value.string)
        case 16: return .map(event.custom)
        case 17:
            guard let g = event.geo else { return nil }
            return .object(SlotObject(schema: EngineSchemas.geo, values: [
                g.latitude.map(Value.double), g.longitude.map(Value.double), g.accuracyRadius.map(Value.double),
                g.asn.map(Value.int), g.asOrganization.map(Value.string), g.isAnonymous.map(Value.bool),
                g.isAnonymousVPN.map(Value.bool), g.isTorExitNode.map(Value.bool), g.isHostingProvider.map(Value.bool),
            ]))
        case 18:
            guard let u = event.userAgent else { return nil }
            return .object(SlotObject(schema: EngineSchemas.userAgent, values: [
                .string(u.browserFamily), u.browserMajor.map(Value.string), u.browserMinor.map(Value.string),
                .string(u.osFamily), u.osMajor.map(Value.string), .string(u.deviceFamily),
                u.deviceBrand.map(Value.string), u.deviceModel.map(Value.string), .string(u.deviceClass),
            ]))
        case 19:
            guard let z = event.networkZone else { return nil }
            return .object(SlotObject(schema: EngineSchemas.network, values: [.string(z)]))
        case 20:
            guard let v = velocity else { return nil }
            return .object(SlotObject(schema: EngineSchemas.velocity, values: [
                .double(v.velocity.distanceKm), .double(v.velocity.elapsedSeconds), .double(v.velocity.speedKmh),
                .double(v.velocity.minimumDistanceKm), .double(v.velocity.minimumSpeedKmh),
                v.previousCity.map(Value.string), v.previousCountry.map(Value.string),
            ]))
        default: return nil
        }
    }
}

/// Velocity plus where the user was before, for the explanation.
struct GeoVelocityValue: Sendable {
    var velocity: GeoVelocity
    var previousCity: String?
    var previousCountry: String?
}

/// The user as expressions see them. Fields are built when read: most policies never
/// read the user, and building them all cost several allocations and map lookups per
/// event. Holds a snapshot, so later changes to the user's state do not show through.
final class UserObject: ValueObject, @unchecked Sendable {
    let id: String
    let custom: ValueMap
    let pending: [PendingChallenge]
    let lastVerified: Int64?
    let failures: Int
    /// Mapped to the confirmed kinds only when read: most events' policies never read them.
    let factors: [Factor]
    /// Kept only for a user with trusted devices: most users have none.
    let deviceCheck: (event: UEBAEvent, devices: [TrustedDevice])?
    let schema = EngineSchemas.user

    init(_ event: UEBAEvent, _ user: UserState) {
        id = event.originalIdentity
        custom = event.custom
        pending = user.pending
        lastVerified = user.lastVerified
        failures = user.verification.failures
        factors = user.factors
        deviceCheck = user.devices.isEmpty ? nil : (event, user.devices)
    }

    private func strings(_ v: Value?) -> Value {
        guard case .list(let items)? = v else { return .list([]) }
        return .list(items.filter { if case .string = $0 { true } else { false } })
    }

    func field(at index: Int) -> Value? {
        switch index {
        case 0: return .string(id)
        case 1: return strings(custom.value(forString: "userGroups"))
        case 2: return strings(custom.value(forString: "roles"))
        case 3:
            if case .string(let d)? = custom.value(forString: "department") { return .string(d) }
            return nil
        case 4:
            return .object(SlotObject(schema: EngineSchemas.userMFA, values: [
                .bool(!pending.isEmpty), .list(pending.map { .string($0.flow) }), lastVerified.map(Value.int),
                .int(Int64(failures)), .list(factors.filter(\.confirmed).map { .string($0.kind.rawValue) }),
            ]))
        case 5:
            let trusted = deviceCheck.map { Engine.presentsTrustedDevice($0.event, devices: $0.devices) } ?? false
            return .object(SlotObject(schema: EngineSchemas.userDevice, values: [.bool(trusted)]))
        default: return nil
        }
    }

    func hasField(at index: Int) -> Bool {
        switch index {
        case 0, 1, 2, 4, 5: return true
        default: return field(at: index) != nil
        }
    }
}
