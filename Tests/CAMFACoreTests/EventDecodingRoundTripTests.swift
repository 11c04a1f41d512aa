import CAMFATestSupport
import Testing

@testable import CAMFACore

func randomEvent(_ rng: inout SeededRandom) -> UEBAEvent {
    func maybe(_ rng: inout SeededRandom) -> String? { rng.next() % 3 == 0 ? nil : randomJSONString(&rng) }
    var identity = randomJSONString(&rng)
    if identity.isEmpty { identity = "u" }
    var e = UEBAEvent(
        appId: maybe(&rng), requestDate: Int64(rng.next() % UInt64(UEBAEvent.maxRequestDate + 1)),
        ip: maybe(&rng), city: maybe(&rng), province: maybe(&rng), country: maybe(&rng), ua: maybe(&rng),
        deviceType: maybe(&rng), systemType: maybe(&rng), browserType: maybe(&rng), originalIdentity: identity,
        behaviorType: maybe(&rng), behaviorResult: maybe(&rng), resourcesType: maybe(&rng),
        actionType: maybe(&rng), loginType: maybe(&rng), networkZone: maybe(&rng))
    for _ in 0..<Int(rng.next() % 6) {
        e.custom[string: randomJSONString(&rng)] = randomJSONValue(&rng, depth: 1)
    }
    if rng.next() & 1 == 0 {
        func flag(_ rng: inout SeededRandom) -> Bool? { [nil, true, false][Int(rng.next() % 3)] }
        e.geo = GeoInfo(
            latitude: rng.next() & 1 == 0 ? nil : Double(rng.next() % 180_000_001) / 1_000_000 - 90,
            longitude: rng.next() & 1 == 0 ? nil : Double(rng.next() % 360_000_001) / 1_000_000 - 180,
            accuracyRadius: rng.next() & 1 == 0 ? nil : Double(rng.next() % 1000),
            asn: rng.next() & 1 == 0 ? nil : Int64(rng.next() % 4_294_967_296),
            asOrganization: maybe(&rng), isAnonymous: flag(&rng), isAnonymousVPN: flag(&rng),
            isTorExitNode: flag(&rng), isHostingProvider: flag(&rng))
    }
    if rng.next() & 1 == 0 {
        e.userAgent = UserAgentInfo(
            browserFamily: randomJSONString(&rng), browserMajor: maybe(&rng), browserMinor: maybe(&rng),
            osFamily: randomJSONString(&rng), osMajor: maybe(&rng), deviceFamily: randomJSONString(&rng),
            deviceBrand: maybe(&rng), deviceModel: maybe(&rng), deviceClass: randomJSONString(&rng))
    }
    return e
}

@Suite struct EventDecodingRoundTripTests {
    @Test func randomEventsRoundTripExactly() throws {
        var rng = SeededRandom(seed: 0xCAFA)
        for _ in 0..<3_000 {
            let e = randomEvent(&rng)
            let bytes = e.jsonBytes()
            let back = try UEBAEvent.decode(json: bytes)
            #expect(back == e, "\(String(decoding: bytes, as: UTF8.self))")
            #expect(back.jsonBytes() == bytes)
        }
    }

    /// decode(json:into:) refills the previous event's custom map in place when the
    /// keys repeat; whatever the sequence of key sets, the result must equal a fresh
    /// decode, and events the caller kept must not change.
    @Test func decodingIntoAReusedEventMatchesFreshDecoding() throws {
        var rng = SeededRandom(seed: 99)
        let shapes: [[String]] = [["a", "b", "c"], ["a", "b"], ["a", "b", "c", "d"], ["b", "a"], [], ["a", #"x\u0062"#], ["a", "xb", "c"]]
        var reused = UEBAEvent(requestDate: 0, originalIdentity: "")
        var kept: [(UEBAEvent, [UInt8])] = []
        for i in 0..<600 {
            let keys = shapes[Int(rng.next() % UInt64(shapes.count))]
            let inObject = rng.next() % 3
            let members = keys.map { #""\#($0)":\#(rng.next() % 1000)"# }
            let split = inObject == 2 ? members.count / 2 : (inObject == 1 ? 0 : members.count)
            var text = #"{"originalIdentity":"u","requestDate":\#(i)"#
            for m in members[..<split] { text += "," + m }
            if split < members.count { text += #","custom":{"# + members[split...].joined(separator: ",") + "}" }
            text += "}"
            let bytes = Array(text.utf8)
            let fresh = try UEBAEvent.decode(json: bytes)
            try UEBAEvent.decode(json: bytes, into: &reused)
            #expect(reused == fresh, "\(text)")
            if i % 7 == 0 { kept.append((reused, fresh.jsonBytes())) }
        }
        for (event, bytes) in kept { #expect(event.jsonBytes() == bytes) }
    }

    @Test func reusedDecodingStillFindsDuplicates() {
        var e = UEBAEvent(requestDate: 0, originalIdentity: "")
        #expect(throws: Never.self) { try UEBAEvent.decode(json: Array(#"{"originalIdentity":"u","requestDate":1,"a":1,"b":2}"#.utf8), into: &e) }
        for (text, field) in [
            (#"{"originalIdentity":"u","requestDate":1,"a":1,"a":2}"#, "a"),
            (#"{"originalIdentity":"u","requestDate":1,"a":1,"b":2,"a":3}"#, "a"),
            (#"{"originalIdentity":"u","requestDate":1,"a":1,"custom":{"b":2,"b":3}}"#, "custom.b"),
            (#"{"originalIdentity":"u","requestDate":1,"a":1,"custom":{"a":2}}"#, "a"),
        ] {
            var again = e
            #expect(throws: EventDecodingError.self) { try UEBAEvent.decode(json: Array(text.utf8), into: &again) }
            do {
                try UEBAEvent.decode(json: Array(text.utf8), into: &again)
            } catch {
                #expect(error.code == .duplicateKey)
                #expect(error.field == field, "\(text)")
            }
        }
    }

    @Test func encodingIsCanonical() throws {
        let e = try decodeEvent(
            #"{"custom":{"b":1},"ip":null,"a":[1.0,-0],"originalIdentity":"u","requestDate":5,"appId":"x","geo":{}}"#)
        #expect(
            String(decoding: e.jsonBytes(), as: UTF8.self)
                == #"{"appId":"x","requestDate":5,"originalIdentity":"u","geo":{},"custom":{"b":1,"a":[1.0,0]}}"#)
    }

    @Test func writesInsideALargerDocument() throws {
        let e = UEBAEvent(requestDate: 1, originalIdentity: "u", custom: ValueMap([("k", .string("v"))]))
        var w = JSONWriter()
        w.beginObject()
        w.field("reason", "late")
        w.key("event")
        e.writeJSON(to: &w)
        w.endObject()
        #expect(String(decoding: w.bytes, as: UTF8.self) == #"{"reason":"late","event":{"requestDate":1,"originalIdentity":"u","custom":{"k":"v"}}}"#)
    }

    @Test func equalityLooksAtEveryField() {
        let base = UEBAEvent(requestDate: 1, originalIdentity: "u", custom: ValueMap([("a", .int(1)), ("b", .int(2))]))
        var other = base
        #expect(base == other)
        other.custom = ValueMap([("b", .int(2)), ("a", .int(1))])
        #expect(base != other, "custom order is part of the event")
        other = base
        other.custom[string: "a"] = .double(1)
        #expect(base != other, "int 1 and double 1.0 differ")
        other = base
        other.geo = GeoInfo()
        #expect(base != other)
        other = base
        other.loginType = "password"
        #expect(base != other)
    }
}
