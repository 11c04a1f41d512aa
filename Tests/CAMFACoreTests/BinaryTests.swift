import CAMFATestSupport
import Testing
@testable import CAMFACore

/// Value has no Equatable of its own here; the encoding is the identity that matters
/// for checkpoints anyway.
func binaryEncoding(_ v: Value) -> [UInt8] {
    var w = BinaryWriter()
    w.writeValue(v)
    return w.bytes
}

func sameValue(_ a: Value, _ b: Value) -> Bool { binaryEncoding(a) == binaryEncoding(b) }

@Suite("Binary encoding")
struct BinaryTests {
    @Test func varintsRoundTripAtTheirEdges() throws {
        let unsigned: [UInt64] = [0, 1, 127, 128, 255, 16_383, 16_384, UInt64(UInt32.max), UInt64.max - 1, UInt64.max]
        let signed: [Int64] = [0, -1, 1, -64, 63, -65, 64, Int64.min, Int64.max, Int64.min + 1]
        var w = BinaryWriter()
        for u in unsigned { w.writeVarUInt(u) }
        for s in signed { w.writeVarInt(s) }
        w.writeFixedInt64(-2)
        w.writeDouble(-0.0)
        w.writeBool(true)
        var r = BinaryReader(w.bytes)
        for u in unsigned { #expect(try r.readVarUInt() == u) }
        for s in signed { #expect(try r.readVarInt() == s) }
        #expect(try r.readFixedInt64() == -2)
        let z = try r.readDouble()
        #expect(z == 0 && z.sign == .minus)
        #expect(try r.readBool() == true)
        try r.expectEnd()
    }

    @Test func varintLengthsAreMinimal() {
        var w = BinaryWriter()
        w.writeVarUInt(127)
        #expect(w.count == 1)
        w.writeVarUInt(128)
        #expect(w.count == 3)
        w.writeVarInt(-1)  // zigzag keeps small negatives in one byte
        #expect(w.count == 4)
        w.writeVarUInt(.max)
        #expect(w.count == 14)
    }

    static func sampleValue() -> Value {
        var inner = ValueMap()
        inner[.int(7)] = .list([.null, .bool(false), .uint(.max)])
        inner[.bool(true)] = .bytes([0, 255, 1])
        inner[.string("ключ")] = .duration(-5_000_000)
        return .list([
            .int(.min), .double(.nan), .double(-.infinity), .string(""), .string("日本語 and ascii"),
            .timestamp(1_700_000_000_000_000_000), .type("google.protobuf.Timestamp"), .map(inner),
            .list([.list([.list([])])]),
        ])
    }

    @Test func valuesRoundTripIncludingNestedListsAndMaps() throws {
        let v = Self.sampleValue()
        let bytes = binaryEncoding(v)
        var r = BinaryReader(bytes)
        let back = try r.readValue()
        try r.expectEnd()
        #expect(binaryEncoding(back) == bytes)
        guard case .list(let items) = back, case .map(let m) = items[7] else {
            Issue.record("structure lost")
            return
        }
        #expect(m.keys.count == 3)
        if case .string(let s)? = items[4] as Value? { #expect(s == "日本語 and ascii") } else { Issue.record("string lost") }
    }

    @Test func objectsAreWrittenAsMapsOfTheirPresentFields() throws {
        final class Obj: ValueObject {
            static let schemaInstance = ObjectSchema(name: "o", fields: [("a", .int), ("b", .string)])
            var schema: ObjectSchema { Self.schemaInstance }
            func field(at index: Int) -> Value? { index == 0 ? .int(3) : nil }
        }
        var r = BinaryReader(binaryEncoding(.object(Obj())))
        let back = try r.readValue()
        guard case .map(let m) = back else { Issue.record("not a map"); return }
        #expect(m.count == 1)
        #expect(m[string: "a"].map { sameValue($0, .int(3)) } == true)
    }

    @Test func everyTruncationOfAValueThrowsTruncated() {
        let bytes = binaryEncoding(Self.sampleValue())
        for cut in 0..<bytes.count {
            var r = BinaryReader(Array(bytes[0..<cut]))
            do {
                _ = try r.readValue()
                Issue.record("prefix of \(cut) bytes decoded")
            } catch {
                #expect(error.code == .truncated || error.code == .lengthOutOfRange, "cut \(cut): \(error)")
            }
        }
    }

    @Test func corruptedValuesThrowOrDecodeButNeverCrash() {
        let bytes = binaryEncoding(Self.sampleValue())
        var rng = SeededRandom(seed: 42)
        var failures = 0
        for _ in 0..<3000 {
            var b = bytes
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            var r = BinaryReader(b)
            do {
                let v = try r.readValue()
                // Whatever decodes is a proper value: its encoding decodes to itself
                // (varints may have been non-minimal in the corrupted input).
                let e = binaryEncoding(v)
                var again = BinaryReader(e)
                #expect(try binaryEncoding(again.readValue()) == e)
            } catch {
                failures += 1
                #expect(error.offset >= 0 && error.offset <= b.count)
            }
        }
        #expect(failures > 0)
    }

    @Test func specificCorruptionsHaveSpecificCodes() {
        func code(_ bytes: [UInt8]) -> BinaryDecodingError.Code? {
            var r = BinaryReader(bytes)
            do { _ = try r.readValue(); return nil } catch { return error.code }
        }
        #expect(code([99]) == .invalidTag)
        #expect(code([BinaryValueTag.int] + Array(repeating: 0xff, count: 10) + [0x01]) == .varintOverflow)
        #expect(code([BinaryValueTag.uint] + Array(repeating: 0xff, count: 9) + [0x02]) == .varintOverflow)
        #expect(code([BinaryValueTag.string, 2, 0xc3, 0x28]) == .invalidUTF8)
        #expect(code([BinaryValueTag.list, 0x80, 0x80, 0x80, 0x80, 0x01]) == .lengthOutOfRange)
        #expect(code(Array(repeating: BinaryValueTag.list, count: 200).flatMap { [$0, 1] }) == .nestingTooDeep)
        // A map with a list key, and one with a duplicate key.
        #expect(code([BinaryValueTag.map, 1, BinaryValueTag.list, 0, BinaryValueTag.null]) == .invalidValue)
        #expect(code([BinaryValueTag.map, 2, BinaryValueTag.int, 2, BinaryValueTag.null, BinaryValueTag.uint, 1, BinaryValueTag.null]) == .invalidValue)
        var r = BinaryReader([BinaryValueTag.null, 0])
        _ = try? r.readValue()
        #expect(throws: BinaryDecodingError.self) { try r.expectEnd() }
    }

    @Test func errorsNameTheirCodeAndOffset() {
        var r = BinaryReader([BinaryValueTag.string, 5, 65])
        do {
            _ = try r.readValue()
            Issue.record("decoded")
        } catch {
            #expect(error.code == .lengthOutOfRange)
            #expect(error.offset == 1)
            #expect(error.description.contains("lengthOutOfRange"))
        }
    }
}
