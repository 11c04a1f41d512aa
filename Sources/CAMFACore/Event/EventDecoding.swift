/// The accepted event contract (schemas/ueba-event.schema.json says the same):
///
/// - the message is one JSON object, at most `maxBytes` long (default 1 MiB);
/// - `originalIdentity`: required, a non-empty string;
/// - `requestDate`: required, an integer number of epoch milliseconds, from 0 to
///   9223372036854 (the last millisecond whose nanosecond timestamp fits 64 bits).
///   As in JSON Schema, an integer may be written with a zero fraction or an exponent
///   (`1.7e12`, `1700000000000.0`: JSON Schema validators accept them, so the decoder
///   must); a fraction (`1.5`), a string or an RFC 3339 date is rejected, never guessed at;
/// - the other seed fields (`appId`, `ip`, `city`, `province`, `country`, `ua`,
///   `deviceType`, `systemType`, `browserType`, `behaviorType`, `behaviorResult`,
///   `resourcesType`, `actionType`, `loginType`) and `networkZone`: string or null,
///   null meaning absent;
/// - `custom`: an object or null. Its entries and every top-level field not named
///   here become `UEBAEvent.custom`, in document order. A key given both inside
///   `custom` and at the top level is a `.duplicateKey` error naming it: neither
///   copy is obviously the one the producer meant;
/// - `geo`, `userAgent`: optional enrichment a producer may send (or a replay of an
///   enriched event carries); enrichment then only fills what they lack. Their
///   fields are checked strictly, unknown ones included, because they are ours;
/// - a key repeated within any object is a `.duplicateKey` error.
///
/// The first problem in document order is reported.
extension UEBAEvent {
    public static let defaultMaxJSONBytes = 1 << 20

    /// The largest `requestDate` accepted: `requestDate * 1_000_000` must fit Int64,
    /// since expressions see event time as a nanosecond timestamp.
    public static let maxRequestDate: Int64 = Int64.max / 1_000_000

    public static func decode(json: [UInt8], maxBytes: Int = defaultMaxJSONBytes) throws(EventDecodingError) -> UEBAEvent {
        var event = UEBAEvent(requestDate: 0, originalIdentity: "")
        try decode(json: json, maxBytes: maxBytes, into: &event)
        return event
    }

    public static func decode(json: UnsafeRawBufferPointer, maxBytes: Int = defaultMaxJSONBytes) throws(EventDecodingError) -> UEBAEvent {
        var event = UEBAEvent(requestDate: 0, originalIdentity: "")
        try decode(json: json, maxBytes: maxBytes, into: &event)
        return event
    }

    /// Decodes into an existing event, replacing all of its fields, for consumers that
    /// keep one event per partition: the event is large (some 600 bytes of fields), and
    /// moving it out of a function costs a copy and release of every field, about as
    /// much as decoding a small message. On error `event` is left in an unspecified
    /// but valid state.
    public static func decode(json: [UInt8], maxBytes: Int = defaultMaxJSONBytes, into event: inout UEBAEvent) throws(EventDecodingError) {
        // Array.withUnsafeBytes only rethrows untyped errors, so the typed one is
        // carried out by hand.
        var failure: EventDecodingError?
        json.withUnsafeBytes { buf in
            do throws(EventDecodingError) { try decode(json: buf, maxBytes: maxBytes, into: &event) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    public static func decode(json: UnsafeRawBufferPointer, maxBytes: Int = defaultMaxJSONBytes, into event: inout UEBAEvent) throws(EventDecodingError) {
        guard let base = json.baseAddress, json.count > 0 else {
            throw EventDecodingError(.empty, "", "empty message")
        }
        guard json.count <= maxBytes else {
            throw EventDecodingError(.tooLarge, "", "message of \(json.count) bytes exceeds the limit of \(maxBytes) bytes")
        }
        // The previous event's custom map is taken out before the reset so that its
        // storage can be refilled in place when the keys repeat.
        var template = ValueMap()
        swap(&template, &event.custom)
        event = UEBAEvent(requestDate: 0, originalIdentity: "")
        var d = EventDecoder(
            s: JSONScanner(base: base.assumingMemoryBound(to: UInt8.self), count: json.count, maxDepth: JSONParser.defaultMaxDepth),
            custom: CustomBuilder(template: template))
        try d.decode(into: &event)
    }
}

/// Top-level keys the decoder reads straight into struct fields.
enum EventField: Int, CaseIterable {
    case appId, requestDate, ip, city, province, country, ua, deviceType, systemType, browserType
    case originalIdentity, behaviorType, behaviorResult, resourcesType, actionType, loginType
    case custom, geo, networkZone, userAgent

    var name: String {
        switch self {
        case .appId: "appId"
        case .requestDate: "requestDate"
        case .ip: "ip"
        case .city: "city"
        case .province: "province"
        case .country: "country"
        case .ua: "ua"
        case .deviceType: "deviceType"
        case .systemType: "systemType"
        case .browserType: "browserType"
        case .originalIdentity: "originalIdentity"
        case .behaviorType: "behaviorType"
        case .behaviorResult: "behaviorResult"
        case .resourcesType: "resourcesType"
        case .actionType: "actionType"
        case .loginType: "loginType"
        case .custom: "custom"
        case .geo: "geo"
        case .networkZone: "networkZone"
        case .userAgent: "userAgent"
        }
    }

    /// Matches raw key bytes without building a String: dispatch on length, then
    /// compare against the one or few names of that length.
    @inline(__always)
    static func match(_ p: UnsafePointer<UInt8>, _ n: Int) -> EventField? {
        @inline(__always) func eq(_ lit: StaticString) -> Bool {
            let l = lit.utf8Start
            for i in 0..<n where p[i] != l[i] { return false }
            return true
        }
        switch n {
        case 2: return eq("ip") ? .ip : eq("ua") ? .ua : nil
        case 3: return eq("geo") ? .geo : nil
        case 4: return eq("city") ? .city : nil
        case 5: return eq("appId") ? .appId : nil
        case 6: return eq("custom") ? .custom : nil
        case 7: return eq("country") ? .country : nil
        case 8: return eq("province") ? .province : nil
        case 9: return eq("loginType") ? .loginType : eq("userAgent") ? .userAgent : nil
        case 10:
            switch p[0] {
            case UInt8(ascii: "d"): return eq("deviceType") ? .deviceType : nil
            case UInt8(ascii: "s"): return eq("systemType") ? .systemType : nil
            case UInt8(ascii: "a"): return eq("actionType") ? .actionType : nil
            default: return nil
            }
        case 11:
            switch p[0] {
            case UInt8(ascii: "r"): return eq("requestDate") ? .requestDate : nil
            case UInt8(ascii: "b"): return eq("browserType") ? .browserType : nil
            case UInt8(ascii: "n"): return eq("networkZone") ? .networkZone : nil
            default: return nil
            }
        case 12: return eq("behaviorType") ? .behaviorType : nil
        case 13: return eq("resourcesType") ? .resourcesType : nil
        case 14: return eq("behaviorResult") ? .behaviorResult : nil
        case 16: return eq("originalIdentity") ? .originalIdentity : nil
        default: return nil
        }
    }
}

struct EventDecoder {
    var s: JSONScanner
    var custom: CustomBuilder

    mutating func decode(into e: inout UEBAEvent) throws(EventDecodingError) {
        s.skipWhitespace()
        guard let first = s.peek() else { throw EventDecodingError(.empty, "", "message is only whitespace") }
        guard first == UInt8(ascii: "{") else { throw notAnObject() }
        s.pos += 1

        var seen: UInt32 = 0

        s.skipWhitespace()
        if s.peek() == UInt8(ascii: "}") {
            s.pos += 1
        } else {
            while true {
                s.skipWhitespace()
                guard s.peek() == UInt8(ascii: "\"") else { throw syntax(s.unexpected("expected a string key")) }
                let keyOffset = s.pos
                let field: EventField?
                var escapedKey: String?
                var keyStart = 0, keyEnd = 0
                do throws(JSONError) {
                    let (start, end, clean) = try s.scanString()
                    (keyStart, keyEnd) = (start, end)
                    if clean {
                        field = EventField.match(s.base + start, end - start)
                    } else {
                        // A key spelled with escapes still names the same field.
                        let key = String(decoding: try s.unescape(start: start, end: end), as: UTF8.self)
                        escapedKey = key
                        field = EventField.allCases.first { $0.name == key }
                    }
                    try s.expect(UInt8(ascii: ":"), "':' after an object key")
                } catch {
                    throw syntax(error)
                }

                if let field {
                    let bit: UInt32 = 1 << UInt32(field.rawValue)
                    if seen & bit != 0 {
                        throw EventDecodingError(.duplicateKey, field.name, "duplicate key", at: keyOffset)
                    }
                    seen |= bit
                    switch field {
                    case .appId: e.appId = try optionalString(field)
                    case .ip: e.ip = try optionalString(field)
                    case .city: e.city = try optionalString(field)
                    case .province: e.province = try optionalString(field)
                    case .country: e.country = try optionalString(field)
                    case .ua: e.ua = try optionalString(field)
                    case .deviceType: e.deviceType = try optionalString(field)
                    case .systemType: e.systemType = try optionalString(field)
                    case .browserType: e.browserType = try optionalString(field)
                    case .behaviorType: e.behaviorType = try optionalString(field)
                    case .behaviorResult: e.behaviorResult = try optionalString(field)
                    case .resourcesType: e.resourcesType = try optionalString(field)
                    case .actionType: e.actionType = try optionalString(field)
                    case .loginType: e.loginType = try optionalString(field)
                    case .networkZone: e.networkZone = try optionalString(field)
                    case .originalIdentity: e.originalIdentity = try identity()
                    case .requestDate: e.requestDate = try epochMilliseconds()
                    case .custom: try customObjectMembers()
                    case .geo:
                        let offset = s.pos
                        if let map = try optionalObject(field) { e.geo = try GeoInfo(json: map, at: offset) }
                    case .userAgent:
                        let offset = s.pos
                        if let map = try optionalObject(field) { e.userAgent = try UserAgentInfo(json: map, at: offset) }
                    }
                } else {
                    try customMember(keyStart: keyStart, keyEnd: keyEnd, escapedKey: escapedKey, keyOffset: keyOffset, inObject: false)
                }

                s.skipWhitespace()
                guard let c = s.peek() else { throw syntax(s.unexpected("expected ',' or '}' in an object")) }
                if c == UInt8(ascii: ",") {
                    s.pos += 1
                } else if c == UInt8(ascii: "}") {
                    s.pos += 1
                    break
                } else {
                    throw syntax(s.unexpected("expected ',' or '}' in an object"))
                }
            }
        }
        do throws(JSONError) { try s.expectEnd() } catch { throw syntax(error) }

        guard seen & 1 << UInt32(EventField.originalIdentity.rawValue) != 0 else {
            throw EventDecodingError(.missingField, "originalIdentity", "required field is missing")
        }
        guard seen & 1 << UInt32(EventField.requestDate.rawValue) != 0 else {
            throw EventDecodingError(.missingField, "requestDate", "required field is missing")
        }

        e.custom = custom.finish()
    }

    /// The members of the `custom` object (or null), fed into the same map as the
    /// top-level custom fields.
    mutating func customObjectMembers() throws(EventDecodingError) {
        s.skipWhitespace()
        switch s.peek() {
        case UInt8(ascii: "{"):
            break
        case UInt8(ascii: "n"):
            do throws(JSONError) { try s.literal("null") } catch { throw EventDecodingError(error, under: "custom") }
            return
        default:
            throw wrongType("custom", expected: "an object or null")
        }
        do throws(JSONError) { try s.checkDepth(2) } catch { throw EventDecodingError(error, under: "custom") }
        s.pos += 1
        s.skipWhitespace()
        if s.peek() == UInt8(ascii: "}") {
            s.pos += 1
            return
        }
        while true {
            s.skipWhitespace()
            guard s.peek() == UInt8(ascii: "\"") else { throw EventDecodingError(s.unexpected("expected a string key"), under: "custom") }
            let keyOffset = s.pos
            var escapedKey: String?
            var keyStart = 0, keyEnd = 0
            do throws(JSONError) {
                let (start, end, clean) = try s.scanString()
                (keyStart, keyEnd) = (start, end)
                if !clean { escapedKey = String(decoding: try s.unescape(start: start, end: end), as: UTF8.self) }
                try s.expect(UInt8(ascii: ":"), "':' after an object key")
            } catch {
                throw EventDecodingError(error, under: "custom")
            }
            try customMember(keyStart: keyStart, keyEnd: keyEnd, escapedKey: escapedKey, keyOffset: keyOffset, inObject: true)
            s.skipWhitespace()
            guard let c = s.peek() else { throw EventDecodingError(s.unexpected("expected ',' or '}' in an object"), under: "custom") }
            if c == UInt8(ascii: ",") {
                s.pos += 1
            } else if c == UInt8(ascii: "}") {
                s.pos += 1
                return
            } else {
                throw EventDecodingError(s.unexpected("expected ',' or '}' in an object"), under: "custom")
            }
        }
    }

    /// One custom field, at the top level or inside `custom`; `pos` is at its value.
    mutating func customMember(keyStart: Int, keyEnd: Int, escapedKey: String?, keyOffset: Int, inObject: Bool) throws(EventDecodingError) {
        let raw = UnsafeBufferPointer(start: s.base + keyStart, count: keyEnd - keyStart)
        let value: Value
        do throws(JSONError) {
            value = try s.parseValue(depth: inObject ? 2 : 1)
        } catch {
            let key = escapedKey ?? String(decoding: raw, as: UTF8.self)
            throw EventDecodingError(error, under: inObject ? "custom." + key : key)
        }
        try custom.add(key: raw, escaped: escapedKey, value: value, inObject: inObject, offset: keyOffset)
    }

    // MARK: field readers

    mutating func optionalString(_ field: EventField) throws(EventDecodingError) -> String? {
        s.skipWhitespace()
        switch s.peek() {
        case UInt8(ascii: "\""):
            do throws(JSONError) { return try s.parseString() } catch { throw EventDecodingError(error, under: field.name) }
        case UInt8(ascii: "n"):
            do throws(JSONError) { try s.literal("null") } catch { throw EventDecodingError(error, under: field.name) }
            return nil
        default:
            throw wrongType(field.name, expected: "a string or null")
        }
    }

    mutating func identity() throws(EventDecodingError) -> String {
        s.skipWhitespace()
        let offset = s.pos
        guard s.peek() == UInt8(ascii: "\"") else {
            throw wrongType("originalIdentity", expected: "a non-empty string")
        }
        let id: String
        do throws(JSONError) { id = try s.parseString() } catch { throw EventDecodingError(error, under: "originalIdentity") }
        if id.isEmpty {
            throw EventDecodingError(.invalidValue, "originalIdentity", "must not be empty", at: offset)
        }
        return id
    }

    mutating func epochMilliseconds() throws(EventDecodingError) -> Int64 {
        let name = "requestDate"
        s.skipWhitespace()
        let offset = s.pos
        guard let c = s.peek(), c == UInt8(ascii: "-") || isDigit(c) else {
            throw wrongType(name, expected: "an integer (epoch milliseconds)")
        }
        let number: Value
        do throws(JSONError) { number = try s.parseNumber() } catch { throw EventDecodingError(error, under: name) }
        switch number {
        case .int(let ms):
            if ms < 0 {
                throw EventDecodingError(.invalidValue, name, "must not be negative (epoch milliseconds)", at: offset)
            }
            if ms > UEBAEvent.maxRequestDate {
                throw EventDecodingError(.invalidValue, name, "after 2262-04-11, the last representable instant", at: offset)
            }
            return ms
        case .double(let d) where d.rounded(.towardZero) == d && d >= 0 && d <= Double(UEBAEvent.maxRequestDate):
            // Below 2^53, so the double is the integer exactly.
            return Int64(d)
        default:
            let literal = UnsafeBufferPointer(start: s.base + offset, count: s.pos - offset)
            if case .double(let d) = number, d.rounded(.towardZero) == d {
                throw EventDecodingError(.invalidValue, name, d < 0 ? "must not be negative (epoch milliseconds)" : "after 2262-04-11, the last representable instant", at: offset)
            }
            if literal.contains(where: { $0 == UInt8(ascii: ".") || $0 | 0x20 == UInt8(ascii: "e") }) {
                throw EventDecodingError(.wrongType, name, "expected an integer (epoch milliseconds), got a number with a fraction", at: offset)
            }
            throw EventDecodingError(.invalidValue, name, "integer out of the 64-bit range", at: offset)
        }
    }

    mutating func optionalObject(_ field: EventField) throws(EventDecodingError) -> ValueMap? {
        s.skipWhitespace()
        switch s.peek() {
        case UInt8(ascii: "{"):
            do throws(JSONError) { return try s.parseObject(depth: 2) } catch { throw EventDecodingError(error, under: field.name) }
        case UInt8(ascii: "n"):
            do throws(JSONError) { try s.literal("null") } catch { throw EventDecodingError(error, under: field.name) }
            return nil
        default:
            throw wrongType(field.name, expected: "an object or null")
        }
    }

    // MARK: errors

    func syntax(_ e: JSONError) -> EventDecodingError { EventDecodingError(e, under: "") }

    /// The value at `pos` has the wrong type. It is parsed first, so that text which
    /// is not JSON at all is reported as such rather than as a type mismatch.
    mutating func wrongType(_ field: String, expected: String) -> EventDecodingError {
        let offset = s.pos
        do throws(JSONError) {
            let v = try s.parseValue(depth: 1)
            return EventDecodingError(.wrongType, field, "expected \(expected), got \(jsonTypeName(v))", at: offset)
        } catch {
            return EventDecodingError(error, under: field)
        }
    }

    mutating func notAnObject() -> EventDecodingError {
        let offset = s.pos
        do throws(JSONError) {
            let v = try s.parseValue(depth: 0)
            try s.expectEnd()
            return EventDecodingError(.notAnObject, "", "expected a JSON object at the top level, got \(jsonTypeName(v))", at: offset)
        } catch {
            return syntax(error)
        }
    }
}

/// JSON's name for the type of a parsed value, with an article, for messages.
func jsonTypeName(_ v: Value) -> String {
    switch v {
    case .null: "null"
    case .bool: "a boolean"
    case .int, .uint, .double: "a number"
    case .string, .bytes, .duration, .timestamp, .type: "a string"
    case .list: "an array"
    case .map, .object: "an object"
    }
}

/// Collects custom fields in document order. A consumer decoding into the same event
/// over and over sees the same custom keys in the same order from one producer, so
/// the previous event's map is used as a template: while the keys match it, values
/// are overwritten in place (one hash, no allocation, no String for the key) instead
/// of growing a new map. The first mismatch falls back to building a fresh map.
struct CustomBuilder {
    var map: ValueMap
    var reusing: Bool
    /// Leading template entries already overwritten by this message.
    var matched = 0
    /// Bit i: entry i came from inside the `custom` object; for duplicate messages.
    var insideObject: UInt64 = 0
    var insideObjectBeyond64: [Int] = []

    init(template: ValueMap) {
        map = template
        reusing = !template.isEmpty
    }

    mutating func add(key raw: UnsafeBufferPointer<UInt8>, escaped: String?, value: consuming Value, inObject: Bool, offset: Int) throws(EventDecodingError) {
        if reusing {
            if escaped == nil, matched < map.count, case .string(let templateKey) = map.keys[matched],
                CustomBuilder.same(templateKey, raw)
            {
                // Template keys are distinct and the message's earlier keys equal the
                // template's first `matched`, so this cannot be a duplicate.
                map[map.keys[matched]] = value
                mark(matched, inObject)
                matched += 1
                return
            }
            stopReusing()
        }
        let key = escaped ?? String(decoding: raw, as: UTF8.self)
        let before = map.count
        map[string: key] = value
        if map.count == before {
            let earlier = map.keys.firstIndex { if case .string(let k) = $0 { k == key } else { false } } ?? 0
            if isInsideObject(earlier) == inObject {
                throw EventDecodingError(.duplicateKey, inObject ? "custom." + key : key, "duplicate key", at: offset)
            }
            throw EventDecodingError(.duplicateKey, key, "given both at the top level and inside custom", at: offset)
        }
        mark(map.count - 1, inObject)
    }

    mutating func finish() -> ValueMap {
        if reusing && matched != map.count { stopReusing() }
        return map
    }

    private mutating func stopReusing() {
        reusing = false
        var fresh = ValueMap()
        for i in 0..<matched { fresh[map.keys[i]] = map.values[i] }
        map = fresh
    }

    private mutating func mark(_ i: Int, _ inObject: Bool) {
        guard inObject else { return }
        if i < 64 { insideObject |= 1 << UInt64(i) } else { insideObjectBeyond64.append(i) }
    }

    private func isInsideObject(_ i: Int) -> Bool {
        i < 64 ? insideObject & 1 << UInt64(i) != 0 : insideObjectBeyond64.contains(i)
    }

    private static func same(_ s: String, _ raw: UnsafeBufferPointer<UInt8>) -> Bool {
        var s = s
        return s.withUTF8 { u in
            guard u.count == raw.count else { return false }
            for i in 0..<u.count where u[i] != raw[i] { return false }
            return true
        }
    }
}

// MARK: enrichment objects

extension GeoInfo {
    static let fieldNames = [
        "latitude", "longitude", "accuracyRadius", "asn", "asOrganization", "isAnonymous",
        "isAnonymousVPN", "isTorExitNode", "isHostingProvider",
    ]

    init(json map: ValueMap, at offset: Int) throws(EventDecodingError) {
        self.init()
        for (k, v) in map.entries {
            let name = JSONWriter.keyText(k)
            let path = "geo." + name
            let r = EnrichmentReader(path: path, value: v, offset: offset)
            switch name {
            case "latitude": latitude = try r.double(in: -90...90, "must be between -90 and 90")
            case "longitude": longitude = try r.double(in: -180...180, "must be between -180 and 180")
            case "accuracyRadius": accuracyRadius = try r.double(in: 0...Double.greatestFiniteMagnitude, "must not be negative")
            case "asn": asn = try r.integer(in: 0...4_294_967_295, "must be between 0 and 4294967295")
            case "asOrganization": asOrganization = try r.string()
            case "isAnonymous": isAnonymous = try r.bool()
            case "isAnonymousVPN": isAnonymousVPN = try r.bool()
            case "isTorExitNode": isTorExitNode = try r.bool()
            case "isHostingProvider": isHostingProvider = try r.bool()
            default:
                throw EventDecodingError(.invalidValue, path, "unknown field; geo accepts \(GeoInfo.fieldNames.joined(separator: ", "))", at: offset)
            }
        }
    }
}

extension UserAgentInfo {
    static let fieldNames = [
        "browserFamily", "browserMajor", "browserMinor", "osFamily", "osMajor", "deviceFamily",
        "deviceBrand", "deviceModel", "deviceClass",
    ]

    init(json map: ValueMap, at offset: Int) throws(EventDecodingError) {
        var browserFamily, osFamily, deviceFamily, deviceClass: String?
        var browserMajor, browserMinor, osMajor, deviceBrand, deviceModel: String?
        for (k, v) in map.entries {
            let name = JSONWriter.keyText(k)
            let r = EnrichmentReader(path: "userAgent." + name, value: v, offset: offset)
            switch name {
            case "browserFamily": browserFamily = try r.string()
            case "browserMajor": browserMajor = try r.string()
            case "browserMinor": browserMinor = try r.string()
            case "osFamily": osFamily = try r.string()
            case "osMajor": osMajor = try r.string()
            case "deviceFamily": deviceFamily = try r.string()
            case "deviceBrand": deviceBrand = try r.string()
            case "deviceModel": deviceModel = try r.string()
            case "deviceClass": deviceClass = try r.string()
            default:
                throw EventDecodingError(
                    .invalidValue, "userAgent." + name,
                    "unknown field; userAgent accepts \(UserAgentInfo.fieldNames.joined(separator: ", "))", at: offset)
            }
        }
        func required(_ v: String?, _ name: String) throws(EventDecodingError) -> String {
            guard let v else {
                throw EventDecodingError(.missingField, "userAgent." + name, "required field is missing", at: offset)
            }
            return v
        }
        self.init(
            browserFamily: try required(browserFamily, "browserFamily"), browserMajor: browserMajor,
            browserMinor: browserMinor, osFamily: try required(osFamily, "osFamily"), osMajor: osMajor,
            deviceFamily: try required(deviceFamily, "deviceFamily"), deviceBrand: deviceBrand,
            deviceModel: deviceModel, deviceClass: try required(deviceClass, "deviceClass"))
    }
}

/// Reads one already parsed field of an enrichment object; null means absent.
struct EnrichmentReader {
    let path: String
    let value: Value
    let offset: Int

    func mismatch(_ expected: String) -> EventDecodingError {
        EventDecodingError(.wrongType, path, "expected \(expected), got \(jsonTypeName(value))", at: offset)
    }

    func string() throws(EventDecodingError) -> String? {
        switch value {
        case .null: return nil
        case .string(let s): return s
        default: throw mismatch("a string or null")
        }
    }

    func bool() throws(EventDecodingError) -> Bool? {
        switch value {
        case .null: return nil
        case .bool(let b): return b
        default: throw mismatch("a boolean or null")
        }
    }

    func double(in range: ClosedRange<Double>, _ rule: String) throws(EventDecodingError) -> Double? {
        let d: Double
        switch value {
        case .null: return nil
        case .int(let i): d = Double(i)
        case .double(let x): d = x
        default: throw mismatch("a number or null")
        }
        guard range.contains(d) else {
            throw EventDecodingError(.invalidValue, path, rule, at: offset)
        }
        return d
    }

    func integer(in range: ClosedRange<Int64>, _ rule: String) throws(EventDecodingError) -> Int64? {
        switch value {
        case .null: return nil
        case .int(let i):
            guard range.contains(i) else {
                throw EventDecodingError(.invalidValue, path, rule, at: offset)
            }
            return i
        default: throw mismatch("an integer or null")
        }
    }
}
