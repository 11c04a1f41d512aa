/// The `authing.security.mfa` event: a CloudEvents 1.0 structured-mode JSON envelope whose
/// `data` carries the decision and its explanation (schemas/mfa-event.schema.json).
public enum MFAEvent {
    public static let type = "authing.security.mfa"

    /// Where the triggering event was read; part of the explanation and of the id.
    public struct Coordinates: Sendable, Equatable {
        public var topic: String
        public var partition: Int32
        public var offset: Int64
        public init(topic: String, partition: Int32, offset: Int64) {
            self.topic = topic
            self.partition = partition
            self.offset = offset
        }
        /// The engine's coordinates string, from which challenge ids derive.
        public var key: String { "\(topic)/\(partition)/\(offset)" }
    }

    /// The event of a decision that challenges (`mfa`) or refuses (`deny`) the user. A
    /// challenge's id is its challenge id; a deny, which holds no challenge, passes `id`
    /// (`ChallengeID.make` of the same coordinates and flow: as deterministic).
    public static func envelope(decision: Decision, event: UEBAEvent, coordinates: Coordinates?, source: String, id: String? = nil) -> Value {
        var data = ValueMap()
        data[string: "user"] = .string(event.originalIdentity)
        data[string: "appId"] = event.appId.map(Value.string) ?? .null
        data[string: "methods"] = .list(decision.methods.map { .string($0.rawValue) })
        data[string: "flow"] = .string(decision.flow)
        data[string: "action"] = .string(decision.action.rawValue)
        data[string: "expiresAt"] = decision.expiresAt.map { .string(RFC3339.format(milliseconds: $0)) } ?? .null
        data[string: "failMode"] = .string(decision.failMode.rawValue)
        data[string: "returns"] = .map(decision.returns)
        data[string: "explanation"] = .list(decision.firedPolicies.map(\.jsonValue))
        var trigger = ValueMap()
        trigger[string: "requestDate"] = .int(event.requestDate)
        trigger[string: "behaviorType"] = event.behaviorType.map(Value.string) ?? .null
        if let c = coordinates {
            trigger[string: "topic"] = .string(c.topic)
            trigger[string: "partition"] = .int(Int64(c.partition))
            trigger[string: "offset"] = .int(c.offset)
        }
        if case .string(let session)? = event.custom[string: "sessionId"] { trigger[string: "sessionId"] = .string(session) }
        data[string: "trigger"] = .map(trigger)
        return wrap(data, id: decision.challengeId ?? id ?? "", user: event.originalIdentity, time: event.requestDate, source: source)
    }

    /// How a challenge stopped holding the user.
    public enum Clearing: String, Sendable {
        /// A verified MFA result: its challenge, and the expired ones the user still held.
        case verified
        /// An operator's release (`POST /v1/users/{id}/release`).
        case release
    }

    /// The event `cleared`: `challenge` no longer holds the user, so a subscriber that held
    /// a session for it lets it go. `time` is the result's or the release's; `coordinates`
    /// are the record's that cleared it, which with the challenge id make the event's id.
    public static func cleared(_ challenge: PendingChallenge, user: String, by clearing: Clearing, method: MFAMethod?,
                               time: Int64, coordinates: Coordinates, source: String, key: ChallengeKey) -> Value {
        var data = ValueMap()
        data[string: "user"] = .string(user)
        // The challenged event's app, so a subscriber per app sees its own releases.
        data[string: "appId"] = challenge.app.map(Value.string) ?? .null
        data[string: "methods"] = .list(method.map { [.string($0.rawValue)] } ?? [])
        data[string: "flow"] = .string(challenge.flow)
        data[string: "action"] = .string("cleared")
        data[string: "expiresAt"] = .null
        data[string: "failMode"] = .null
        data[string: "returns"] = .map(ValueMap())
        data[string: "explanation"] = .list([])
        data[string: "challengeId"] = .string(challenge.id)
        data[string: "clearedBy"] = .string(clearing.rawValue)
        var trigger = ValueMap()
        trigger[string: "requestDate"] = .int(time)
        trigger[string: "behaviorType"] = .string(clearing == .verified ? "mfa" : "release")
        trigger[string: "topic"] = .string(coordinates.topic)
        trigger[string: "partition"] = .int(Int64(coordinates.partition))
        trigger[string: "offset"] = .int(coordinates.offset)
        data[string: "trigger"] = .map(trigger)
        // One record can clear several challenges: the cleared one's id tells them apart.
        let id = ChallengeID.make(coordinates: coordinates.key, flow: "cleared " + challenge.id, key: key)
        return wrap(data, id: id, user: user, time: time, source: source)
    }

    private static func wrap(_ data: ValueMap, id: String, user: String, time: Int64, source: String) -> Value {
        var e = ValueMap()
        e[string: "specversion"] = .string("1.0")
        e[string: "id"] = .string(id)
        e[string: "source"] = .string(source)
        e[string: "type"] = .string(type)
        e[string: "subject"] = .string(user)
        e[string: "time"] = .string(RFC3339.format(milliseconds: time))
        e[string: "datacontenttype"] = .string("application/json")
        e[string: "data"] = .map(data)
        return .map(e)
    }
}

/// RFC 3339 UTC timestamps from epoch milliseconds without Foundation's formatters (they
/// are slow and locale-sensitive; this runs per published event).
public enum RFC3339 {
    public static func format(milliseconds ms: Int64) -> String {
        let (secsTotal, millis) = ms.quotientAndRemainder(dividingBy: 1000)
        var secs = secsTotal
        var msPart = millis
        if msPart < 0 { msPart += 1000; secs -= 1 }
        var days = secs / 86_400
        var rem = secs % 86_400
        if rem < 0 { rem += 86_400; days -= 1 }
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        var y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        if m <= 2 { y += 1 }
        func pad(_ v: Int64, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(rem / 3600, 2)):\(pad(rem % 3600 / 60, 2)):\(pad(rem % 60, 2)).\(pad(msPart, 3))Z"
    }
}
