import CAMFATestSupport
import Testing

@testable import CAMFACore

func jsonText(_ v: Value) -> String { String(decoding: JSONWriter.encode(v), as: UTF8.self) }

private final class PointObject: ValueObject {
    static let pointSchema = ObjectSchema(name: "test.Point", fields: [("x", .int), ("label", .string), ("y", .int)])
    let x: Int64
    let label: String?
    let y: Int64
    init(x: Int64, label: String?, y: Int64) {
        self.x = x
        self.label = label
        self.y = y
    }
    var schema: ObjectSchema { PointObject.pointSchema }
    func field(at index: Int) -> Value? {
        switch index {
        case 0: .int(x)
        case 1: label.map(Value.string)
        default: .int(y)
        }
    }
}

@Suite struct JSONWriterTests {
    @Test func scalars() {
        #expect(jsonText(.null) == "null")
        #expect(jsonText(.bool(true)) == "true")
        #expect(jsonText(.int(-9_223_372_036_854_775_808)) == "-9223372036854775808")
        #expect(jsonText(.int(0)) == "0")
        #expect(jsonText(.uint(18_446_744_073_709_551_615)) == "18446744073709551615")
        #expect(jsonText(.type("int")) == #""int""#)
    }

    @Test func doubles() {
        #expect(jsonText(.double(0.1)) == "0.1")
        #expect(jsonText(.double(1)) == "1.0")
        #expect(jsonText(.double(-0.0)) == "-0.0")
        #expect(jsonText(.double(1e-5)) == "1e-05")
        #expect(jsonText(.double(1e300)) == "1e+300")
        #expect(jsonText(.double(.nan)) == "null")
        #expect(jsonText(.double(.infinity)) == "null")
        #expect(jsonText(.double(-.infinity)) == "null")
        #expect(jsonText(.double(.leastNonzeroMagnitude)) == "5e-324")
    }

    @Test func stringEscaping() {
        #expect(jsonText(.string("a\"b\\c/d")) == #""a\"b\\c/d""#)
        #expect(jsonText(.string("\n\r\t\u{08}\u{0C}")) == #""\n\r\t\b\f""#)
        #expect(jsonText(.string("\u{0}\u{1F}\u{7F}")) == "\"\\u0000\\u001f\u{7F}\"")
        #expect(jsonText(.string("é中😀")) == "\"é中😀\"")
        #expect(jsonText(.string("")) == #""""#)
    }

    @Test func mapsKeepInsertionOrderAndStringifyKeys() {
        var m = ValueMap()
        m[string: "z"] = .int(1)
        m[.int(7)] = .bool(false)
        m[string: "a"] = .list([.null, .string("x")])
        m[.bool(true)] = .map(ValueMap())
        #expect(jsonText(.map(m)) == #"{"z":1,"7":false,"a":[null,"x"],"true":{}}"#)
    }

    @Test func celTypesWithoutJSONCounterparts() {
        #expect(jsonText(.duration(600_000_000_000)) == #""600s""#)
        #expect(jsonText(.duration(1_500_000_000)) == #""1.500s""#)
        #expect(jsonText(.duration(-1)) == #""-0.000000001s""#)
        #expect(jsonText(.duration(2_000_001_000)) == #""2.000001s""#)
        #expect(jsonText(.duration(0)) == #""0s""#)
        #expect(jsonText(.timestamp(0)) == #""1970-01-01T00:00:00Z""#)
        #expect(jsonText(.timestamp(1_763_900_000_123_000_000)) == #""2025-11-23T12:13:20.123Z""#)
        #expect(jsonText(.timestamp(951_782_400_000_000_000)) == #""2000-02-29T00:00:00Z""#)
        #expect(jsonText(.timestamp(-1)) == #""1969-12-31T23:59:59.999999999Z""#)
        #expect(jsonText(.timestamp(.max)) == #""2262-04-11T23:47:16.854775807Z""#)
        #expect(jsonText(.timestamp(.min)) == #""1677-09-21T00:12:43.145224192Z""#)
        #expect(jsonText(.bytes([])) == #""""#)
        #expect(jsonText(.bytes(Array("f".utf8))) == #""Zg==""#)
        #expect(jsonText(.bytes(Array("fo".utf8))) == #""Zm8=""#)
        #expect(jsonText(.bytes(Array("foobar".utf8))) == #""Zm9vYmFy""#)
        #expect(jsonText(.bytes([0xFF, 0xFE, 0x00])) == #""//4A""#)
    }

    @Test func timestampsAgreeWithFoundationCalendarMath() {
        // Every 37 days across several centuries, including leap-year edges.
        var day: Int64 = -200_000
        while day < 200_000 {
            let (y, m, d) = JSONWriter.civilDate(daysSinceEpoch: day)
            // Days from civil, computed independently by counting from year 0.
            func isLeap(_ y: Int64) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }
            let monthDays: [Int64] = [31, isLeap(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
            #expect(m >= 1 && m <= 12 && d >= 1 && Int64(d) <= monthDays[m - 1])
            let (ny, nm, nd) = JSONWriter.civilDate(daysSinceEpoch: day + 1)
            let advanced = (ny == y && nm == m && nd == d + 1) || (ny == y && nm == m + 1 && nd == 1) || (ny == y + 1 && nm == 1 && nd == 1 && m == 12)
            #expect(advanced, "\(y)-\(m)-\(d) -> \(ny)-\(nm)-\(nd)")
            day += 37
        }
    }

    @Test func objectsUseSchemaFieldNames() {
        #expect(jsonText(.object(PointObject(x: 1, label: "p", y: -2))) == #"{"x":1,"label":"p","y":-2}"#)
        #expect(jsonText(.object(PointObject(x: 1, label: nil, y: 2))) == #"{"x":1,"y":2}"#)
    }

    @Test func streamingBuilder() {
        var w = JSONWriter()
        #expect(!w.isComplete)
        w.beginObject()
        w.field("id", "abc")
        w.key("methods")
        w.beginArray()
        w.value("sms")
        w.value("otp")
        w.beginArray()
        w.endArray()
        w.endArray()
        w.key("score")
        w.value(0.5)
        w.key("n")
        w.value(3)
        w.key("ok")
        w.value(true)
        w.key("none")
        w.null()
        w.key("nested")
        w.beginObject()
        w.endObject()
        w.key("raw")
        w.rawValue(Array("[1,2]".utf8))
        w.field("v", .list([.int(1)]))
        w.endObject()
        #expect(w.isComplete)
        let text = String(decoding: w.bytes, as: UTF8.self)
        #expect(text == #"{"id":"abc","methods":["sms","otp",[]],"score":0.5,"n":3,"ok":true,"none":null,"nested":{},"raw":[1,2],"v":[1]}"#)
        #expect((try? JSONParser.parse(w.bytes)) != nil)
    }

    @Test func topLevelArrayOfScalars() {
        var w = JSONWriter()
        w.beginArray()
        w.value(Int64(1))
        w.value(UInt64(2))
        w.value("3")
        w.endArray()
        #expect(String(decoding: w.bytes, as: UTF8.self) == #"[1,2,"3"]"#)
    }

    /// Whatever the parser produces, the writer writes back to something the parser
    /// reads as the same value, and writing that again gives identical bytes.
    @Test func randomValuesRoundTrip() throws {
        var rng = SeededRandom(seed: 42)
        for _ in 0..<2_000 {
            let v = randomJSONValue(&rng, depth: 0)
            let bytes = JSONWriter.encode(v)
            let back = try JSONParser.parse(bytes)
            #expect(eventValuesEqual(v, back), "\(String(decoding: bytes, as: UTF8.self))")
            #expect(JSONWriter.encode(back) == bytes)
        }
    }
}

/// Random strings that exercise escaping: ASCII, controls, quotes, backslashes,
/// two-, three- and four-byte UTF-8, and lengths on both sides of eight bytes.
func randomJSONString(_ rng: inout SeededRandom) -> String {
    let pool: [Unicode.Scalar] = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{0}", "\u{1F}", "\u{7F}", "é", "ß", "中", "\u{FFFF}", "😀", "\u{10FFFF}", "-", "."]
    let n = Int(rng.next() % 24)
    var s = String.UnicodeScalarView()
    for _ in 0..<n { s.append(pool[Int(rng.next() % UInt64(pool.count))]) }
    return String(s)
}

func randomJSONValue(_ rng: inout SeededRandom, depth: Int) -> Value {
    let pick = rng.next() % (depth > 3 ? 6 : 8)
    switch pick {
    case 0: return .null
    case 1: return .bool(rng.next() & 1 == 0)
    case 2:
        let r = rng.next()
        return .int(r & 1 == 0 ? Int64(bitPattern: r) : Int64(bitPattern: r) % 10_000)
    case 3:
        var d = Double(bitPattern: rng.next())
        if !d.isFinite { d = 0.5 }
        return .double(rng.next() & 1 == 0 ? d : Double(Int64(bitPattern: rng.next()) % 100_000) / 100)
    case 4, 5: return .string(randomJSONString(&rng))
    case 6:
        return .list((0..<Int(rng.next() % 5)).map { _ in randomJSONValue(&rng, depth: depth + 1) })
    default:
        var m = ValueMap()
        for _ in 0..<Int(rng.next() % 5) { m[string: randomJSONString(&rng)] = randomJSONValue(&rng, depth: depth + 1) }
        return .map(m)
    }
}
