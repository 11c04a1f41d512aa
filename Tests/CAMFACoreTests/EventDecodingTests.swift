import Testing

@testable import CAMFACore

func decodeEvent(_ text: String, maxBytes: Int = UEBAEvent.defaultMaxJSONBytes) throws(EventDecodingError) -> UEBAEvent {
    try UEBAEvent.decode(json: Array(text.utf8), maxBytes: maxBytes)
}

func decodeEventError(_ bytes: [UInt8], maxBytes: Int = UEBAEvent.defaultMaxJSONBytes) -> EventDecodingError? {
    do {
        _ = try UEBAEvent.decode(json: bytes, maxBytes: maxBytes)
        return nil
    } catch {
        return error
    }
}

func decodeEventError(_ text: String, maxBytes: Int = UEBAEvent.defaultMaxJSONBytes) -> EventDecodingError? {
    decodeEventError(Array(text.utf8), maxBytes: maxBytes)
}

/// The smallest valid event, to splice test fields into.
let minimalEventPrefix = #"{"originalIdentity":"u1","requestDate":1700000000000"#

@Suite struct EventDecodingAcceptTests {
    @Test func minimalEvent() throws {
        let e = try decodeEvent(#"{"originalIdentity":"u1","requestDate":0}"#)
        #expect(e == UEBAEvent(requestDate: 0, originalIdentity: "u1"))
        #expect(e.custom.isEmpty && e.geo == nil && e.userAgent == nil)
    }

    @Test func allSeedFields() throws {
        let json = #"""
            {"appId":"app","requestDate":1763900000123,"ip":"203.0.113.7","city":"Hangzhou",
             "province":"Zhejiang","country":"CN","ua":"Mozilla/5.0","deviceType":"desktop",
             "systemType":"Windows","browserType":"Chrome","originalIdentity":"u-1",
             "behaviorType":"login","behaviorResult":"success","resourcesType":"app",
             "actionType":"access","loginType":"password","networkZone":"office"}
            """#
        let e = try decodeEvent(json)
        let want = UEBAEvent(
            appId: "app", requestDate: 1_763_900_000_123, ip: "203.0.113.7", city: "Hangzhou",
            province: "Zhejiang", country: "CN", ua: "Mozilla/5.0", deviceType: "desktop",
            systemType: "Windows", browserType: "Chrome", originalIdentity: "u-1", behaviorType: "login",
            behaviorResult: "success", resourcesType: "app", actionType: "access", loginType: "password",
            networkZone: "office")
        #expect(e == want)
    }

    @Test func nullMeansAbsent() throws {
        let e = try decodeEvent(minimalEventPrefix + #","ip":null,"city":null,"custom":null,"geo":null,"userAgent":null,"networkZone":null}"#)
        #expect(e.ip == nil && e.city == nil && e.geo == nil && e.userAgent == nil && e.networkZone == nil)
        #expect(e.custom.isEmpty)
    }

    @Test func customFieldsInDocumentOrder() throws {
        let e = try decodeEvent(
            minimalEventPrefix + #","department":"Finance","custom":{"roles":["a","b"],"level":3},"sessionId":"s1"}"#)
        #expect(e.custom.keys.map(jsonShow) == [#"s:"department""#, #"s:"roles""#, #"s:"level""#, #"s:"sessionId""#])
        #expect(jsonShow(.map(e.custom)) == #"{s:"department"=s:"Finance",s:"roles"=[s:"a",s:"b"],s:"level"=i:3,s:"sessionId"=s:"s1"}"#)
    }

    @Test func keysSpelledWithEscapesNameTheSameField() throws {
        let e = try decodeEvent(#"{"original\u0049dentity":"u1","request\u0044ate":5,"\u0069p":"10.0.0.1"}"#)
        #expect(e.originalIdentity == "u1" && e.requestDate == 5 && e.ip == "10.0.0.1")
    }

    @Test func enrichmentObjects() throws {
        let e = try decodeEvent(
            minimalEventPrefix
                + #","geo":{"latitude":30.25,"longitude":120,"accuracyRadius":5,"asn":4134,"asOrganization":"Chinanet","isAnonymous":false,"isAnonymousVPN":null,"isTorExitNode":true,"isHostingProvider":false},"#
                + #""userAgent":{"browserFamily":"Chrome","browserMajor":"131","osFamily":"Windows","deviceFamily":"Other","deviceClass":"desktop"}}"#)
        #expect(
            e.geo
                == GeoInfo(
                    latitude: 30.25, longitude: 120, accuracyRadius: 5, asn: 4134, asOrganization: "Chinanet",
                    isAnonymous: false, isTorExitNode: true, isHostingProvider: false))
        #expect(
            e.userAgent
                == UserAgentInfo(browserFamily: "Chrome", browserMajor: "131", osFamily: "Windows", deviceFamily: "Other", deviceClass: "desktop"))
    }

    @Test func requestDateBounds() throws {
        #expect(try decodeEvent(#"{"originalIdentity":"u","requestDate":9223372036854}"#).requestDate == UEBAEvent.maxRequestDate)
        #expect(try decodeEvent(#"{"originalIdentity":"u","requestDate":-0}"#).requestDate == 0)
    }

    @Test func unsafeBufferAndIntoVariants() throws {
        let bytes = Array((minimalEventPrefix + #","x":1}"#).utf8)
        let a = try bytes.withUnsafeBytes { buf in try UEBAEvent.decode(json: buf) }
        var b = UEBAEvent(appId: "stale", requestDate: 9, originalIdentity: "old", custom: ValueMap([("old", .null)]))
        try UEBAEvent.decode(json: bytes, into: &b)
        #expect(a == b)
        #expect(b.appId == nil && b.custom.count == 1 && b.custom[string: "x"] != nil)
    }

    @Test func sizeLimitIsInclusive() throws {
        let text = #"{"originalIdentity":"u","requestDate":1}"#
        #expect(try decodeEvent(text, maxBytes: text.utf8.count).originalIdentity == "u")
    }
}

@Suite struct EventDecodingErrorTests {
    func expectError(
        _ text: String, _ code: EventDecodingError.Code, _ field: String, _ message: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let e = decodeEventError(text)
        #expect(e?.code == code, "\(e?.message ?? "decoded")", sourceLocation: sourceLocation)
        #expect(e?.field == field, "\(e?.message ?? "decoded")", sourceLocation: sourceLocation)
        if let message {
            #expect(e?.message == message, sourceLocation: sourceLocation)
        }
        if let e, !field.isEmpty {
            #expect(e.message.hasPrefix(field + ": "), "message names the field: \(e.message)", sourceLocation: sourceLocation)
        }
    }

    @Test func empty() {
        #expect(decodeEventError([])?.code == .empty)
        #expect(decodeEventError(" \n\t")?.code == .empty)
        #expect(decodeEventError([])?.field == "")
    }

    @Test func tooLargeIsCheckedBeforeParsing() {
        let e = decodeEventError("not even json, but too long", maxBytes: 10)
        #expect(e?.code == .tooLarge)
        #expect(e?.message == "message of 27 bytes exceeds the limit of 10 bytes")
        let big = [UInt8](repeating: 0x20, count: UEBAEvent.defaultMaxJSONBytes + 1)
        #expect(decodeEventError(big)?.code == .tooLarge)
    }

    @Test func invalidUTF8() {
        var bytes = Array((minimalEventPrefix + #","city":"ab"#).utf8)
        bytes += [0xC0, 0xAF]
        bytes += Array(#""}"#.utf8)
        let e = decodeEventError(bytes)
        #expect(e?.code == .invalidUTF8)
        #expect(e?.field == "city")
        #expect(e?.message == "city: invalid UTF-8: overlong encoding at byte \(bytes.count - 4)")

        var nested = Array((minimalEventPrefix + #","custom":{"roles":["a","b",""#).utf8)
        nested += [0xED, 0xA0, 0x80]
        nested += Array(#""]}}"#.utf8)
        let n = decodeEventError(nested)
        #expect(n?.code == .invalidUTF8)
        #expect(n?.field == "custom.roles[2]")

        expectError(minimalEventPrefix + #","appId":"\ud800"}"#, .invalidUTF8, "appId")
        expectError(minimalEventPrefix + #","extra":{"k":"\udc00"}}"#, .invalidUTF8, "extra.k")
    }

    @Test func notJSON() {
        expectError("{", .notJSON, "")
        expectError(#"{"originalIdentity":"u","requestDate":1} trailing"#, .notJSON, "")
        expectError(#"{"originalIdentity":"u","requestDate":1,}"#, .notJSON, "")
        expectError(#"{originalIdentity:"u"}"#, .notJSON, "")
        expectError(minimalEventPrefix + #","custom":{"roles":["a",tru]}}"#, .notJSON, "custom.roles[1]")
        expectError(minimalEventPrefix + #","city":"a\qb"}"#, .notJSON, "city")
        expectError(#"{"originalIdentity":"u","requestDate":01}"#, .notJSON, "requestDate")
        // A value of the wrong type that is not JSON either is reported as not JSON.
        expectError(minimalEventPrefix + #","ip":[1,}"#, .notJSON, "ip[1]")
        expectError("nonsense", .notJSON, "")
    }

    @Test func notAnObject() {
        expectError("[]", .notAnObject, "", "expected a JSON object at the top level, got an array")
        expectError(#""event""#, .notAnObject, "", "expected a JSON object at the top level, got a string")
        expectError("42", .notAnObject, "", "expected a JSON object at the top level, got a number")
        expectError("null", .notAnObject, "", "expected a JSON object at the top level, got null")
        // Not an object and not complete JSON either: the syntax is the problem.
        expectError("[1, 2", .notJSON, "")
    }

    @Test func missingField() {
        expectError(#"{"requestDate":1}"#, .missingField, "originalIdentity", "originalIdentity: required field is missing")
        expectError(#"{"originalIdentity":"u"}"#, .missingField, "requestDate", "requestDate: required field is missing")
        expectError("{}", .missingField, "originalIdentity")
        expectError(
            minimalEventPrefix + #","userAgent":{"browserFamily":"Chrome","osFamily":"Linux","deviceFamily":"Other"}}"#,
            .missingField, "userAgent.deviceClass")
    }

    @Test func wrongType() {
        expectError(
            #"{"originalIdentity":"u","requestDate":"1700000000000"}"#, .wrongType, "requestDate",
            "requestDate: expected an integer (epoch milliseconds), got a string")
        expectError(
            #"{"originalIdentity":"u","requestDate":1.5}"#, .wrongType, "requestDate",
            "requestDate: expected an integer (epoch milliseconds), got a number with a fraction")
        // Integers in other notations are integers, as JSON Schema says (schemathesis sends them).
        #expect((try? decodeEvent(#"{"originalIdentity":"u","requestDate":1.7e12}"#))?.requestDate == 1_700_000_000_000)
        #expect((try? decodeEvent(#"{"originalIdentity":"u","requestDate":1.0}"#))?.requestDate == 1)
        expectError(#"{"originalIdentity":"u","requestDate":1e13}"#, .invalidValue, "requestDate")
        expectError(#"{"originalIdentity":"u","requestDate":-1.0}"#, .invalidValue, "requestDate")
        expectError(#"{"originalIdentity":"u","requestDate":null}"#, .wrongType, "requestDate")
        expectError(
            #"{"originalIdentity":42,"requestDate":1}"#, .wrongType, "originalIdentity",
            "originalIdentity: expected a non-empty string, got a number")
        expectError(#"{"originalIdentity":null,"requestDate":1}"#, .wrongType, "originalIdentity")
        expectError(minimalEventPrefix + #","ip":42}"#, .wrongType, "ip", "ip: expected a string or null, got a number")
        expectError(minimalEventPrefix + #","ua":{"a":1}}"#, .wrongType, "ua", "ua: expected a string or null, got an object")
        expectError(minimalEventPrefix + #","loginType":true}"#, .wrongType, "loginType")
        expectError(minimalEventPrefix + #","custom":[1]}"#, .wrongType, "custom", "custom: expected an object or null, got an array")
        expectError(minimalEventPrefix + #","geo":"here"}"#, .wrongType, "geo")
        expectError(minimalEventPrefix + #","geo":{"latitude":"30"}}"#, .wrongType, "geo.latitude", "geo.latitude: expected a number or null, got a string")
        expectError(minimalEventPrefix + #","geo":{"asn":1.5}}"#, .wrongType, "geo.asn")
        expectError(minimalEventPrefix + #","geo":{"isAnonymous":1}}"#, .wrongType, "geo.isAnonymous")
        expectError(minimalEventPrefix + #","userAgent":{"browserFamily":7}}"#, .wrongType, "userAgent.browserFamily")
        expectError(minimalEventPrefix + #","networkZone":["a"]}"#, .wrongType, "networkZone")
    }

    @Test func invalidValue() {
        expectError(#"{"originalIdentity":"","requestDate":1}"#, .invalidValue, "originalIdentity", "originalIdentity: must not be empty")
        expectError(#"{"originalIdentity":"u","requestDate":-1}"#, .invalidValue, "requestDate", "requestDate: must not be negative (epoch milliseconds)")
        expectError(#"{"originalIdentity":"u","requestDate":9223372036855}"#, .invalidValue, "requestDate")
        expectError(#"{"originalIdentity":"u","requestDate":99999999999999999999}"#, .invalidValue, "requestDate")
        expectError(minimalEventPrefix + #","geo":{"latitude":90.5}}"#, .invalidValue, "geo.latitude", "geo.latitude: must be between -90 and 90")
        expectError(minimalEventPrefix + #","geo":{"longitude":-180.01}}"#, .invalidValue, "geo.longitude")
        expectError(minimalEventPrefix + #","geo":{"accuracyRadius":-1}}"#, .invalidValue, "geo.accuracyRadius")
        expectError(minimalEventPrefix + #","geo":{"asn":4294967296}}"#, .invalidValue, "geo.asn")
        expectError(minimalEventPrefix + #","geo":{"city":"x"}}"#, .invalidValue, "geo.city")
        expectError(
            minimalEventPrefix + #","userAgent":{"browserFamily":"a","osFamily":"b","deviceFamily":"c","deviceClass":"d","engine":"e"}}"#,
            .invalidValue, "userAgent.engine")
        expectError(minimalEventPrefix + #","score":1e999}"#, .invalidValue, "score")
    }

    @Test func duplicateKey() {
        expectError(#"{"originalIdentity":"u","requestDate":1,"originalIdentity":"v"}"#, .duplicateKey, "originalIdentity", "originalIdentity: duplicate key")
        expectError(#"{"originalIdentity":"u","requestDate":1,"request\u0044ate":2}"#, .duplicateKey, "requestDate")
        expectError(minimalEventPrefix + #","x":1,"x":2}"#, .duplicateKey, "x")
        expectError(minimalEventPrefix + #","custom":{"a":1,"a":2}}"#, .duplicateKey, "custom.a")
        expectError(minimalEventPrefix + #","custom":{},"custom":{}}"#, .duplicateKey, "custom")
        expectError(minimalEventPrefix + #","geo":{"asn":1,"asn":1}}"#, .duplicateKey, "geo.asn")
        expectError(
            minimalEventPrefix + #","department":"HR","custom":{"department":"Finance"}}"#, .duplicateKey, "department",
            "department: given both at the top level and inside custom")
        expectError(minimalEventPrefix + #","custom":{"department":"Finance"},"department":"HR"}"#, .duplicateKey, "department")
    }

    @Test func tooDeep() {
        let deep = String(repeating: "[", count: 63) + String(repeating: "]", count: 63)
        #expect((try? decodeEvent(minimalEventPrefix + #","x":\#(deep)}"#)) != nil)
        let tooDeep = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        expectError(minimalEventPrefix + #","x":\#(tooDeep)}"#, .tooDeep, "x" + String(repeating: "[0]", count: 63))
        // `custom` itself is the second level, so 64 nested objects reach level 65.
        let nested = String(repeating: #"{"a":"#, count: 64) + "1" + String(repeating: "}", count: 64)
        expectError(minimalEventPrefix + #","custom":\#(nested)}"#, .tooDeep, "custom." + Array(repeating: "a", count: 63).joined(separator: "."))
    }

    /// `tooLong` comes from the intake's limits (EventLimits), not from the decoder.
    @Test func tooLong() throws {
        let limits = EventLimits(maxIdentityBytes: 8, maxFieldBytes: 16)
        func violation(_ json: String) throws -> EventDecodingError? { try decodeEvent(json).violation(of: limits) }
        #expect(try violation(#"{"originalIdentity":"12345678","requestDate":1,"ip":"0123456789abcdef"}"#) == nil)
        // Bytes, not characters: four 2-byte letters and one more is 10 bytes.
        let e = try violation(#"{"originalIdentity":"ééééé","requestDate":1}"#)
        #expect(e?.code == .tooLong)
        #expect(e?.field == "originalIdentity")
        #expect(e?.message == "originalIdentity: 10 bytes exceeds engine.maxIdentityBytes 8")
        #expect(try violation(#"{"originalIdentity":"u","requestDate":1,"ua":"0123456789abcdefg"}"#)?.field == "ua")
        #expect(try violation(#"{"originalIdentity":"u","requestDate":1,"deviceId":"0123456789abcdefg"}"#)?.field == "custom.deviceId")
        #expect(try violation(#"{"originalIdentity":"u","requestDate":1,"roles":["a","0123456789abcdefg"]}"#)?.field == "custom.roles[1]")
        // The message names the field and the size, never the value.
        #expect(try violation(#"{"originalIdentity":"secretsecret","requestDate":1}"#)?.message.contains("secret") == false)
    }

    @Test func everyCodeIsCovered() {
        // Guards this suite: a new code must come with a test above.
        #expect(EventDecodingError.Code.allCases.count == 11)
    }

    @Test func messagesNeverQuoteValues() {
        let secret = "alice@example.com"
        let cases = [
            #"{"originalIdentity":"\#(secret)","requestDate":"\#(secret)"}"#,
            #"{"originalIdentity":"\#(secret)","requestDate":1,"ip":{"v":"\#(secret)"}}"#,
            #"{"originalIdentity":"\#(secret)","requestDate":1,"city":"\#(secret)\q"}"#,
        ]
        for text in cases {
            let e = decodeEventError(text)
            #expect(e != nil)
            #expect(e?.message.contains(secret) == false, "\(e?.message ?? "")")
        }
    }
}
