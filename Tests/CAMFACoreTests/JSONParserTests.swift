import Foundation
import CAMFATestSupport
import Testing

@testable import CAMFACore

/// Renders a parsed value in a compact, type-revealing form so tests can compare
/// structure without `Value` being Equatable: `i:1`, `d:1.0`, `s:"x"`, `{k:v}`.
func jsonShow(_ v: Value) -> String {
    switch v {
    case .null: "null"
    case .bool(let b): "\(b)"
    case .int(let i): "i:\(i)"
    case .uint(let u): "u:\(u)"
    case .double(let d): "d:\(d)"
    case .string(let s): "s:\(s.debugDescription)"
    case .bytes(let b): "b:\(b)"
    case .list(let l): "[" + l.map(jsonShow).joined(separator: ",") + "]"
    case .map(let m): "{" + m.entries.map { "\(jsonShow($0.0))=\(jsonShow($0.1))" }.joined(separator: ",") + "}"
    case .duration(let n): "dur:\(n)"
    case .timestamp(let n): "ts:\(n)"
    case .type(let t): "type:\(t)"
    case .object: "object"
    }
}

func jsonParse(_ text: String) throws(JSONError) -> Value { try JSONParser.parse(text) }
func jsonParse(bytes: [UInt8]) throws(JSONError) -> Value { try JSONParser.parse(bytes) }

func jsonParseError(_ bytes: [UInt8]) -> JSONError? {
    do {
        _ = try JSONParser.parse(bytes)
        return nil
    } catch {
        return error
    }
}

func jsonParseError(_ text: String) -> JSONError? { jsonParseError(Array(text.utf8)) }

@Suite struct JSONParserStructureTests {
    @Test func scalarsAndContainers() throws {
        #expect(jsonShow(try jsonParse("null")) == "null")
        #expect(jsonShow(try jsonParse(" true ")) == "true")
        #expect(jsonShow(try jsonParse("false")) == "false")
        #expect(jsonShow(try jsonParse(#""a""#)) == #"s:"a""#)
        #expect(jsonShow(try jsonParse("[]")) == "[]")
        #expect(jsonShow(try jsonParse("{}")) == "{}")
        #expect(jsonShow(try jsonParse(#"[1, "x", [null], {"k": false}]"#)) == #"[i:1,s:"x",[null],{s:"k"=false}]"#)
    }

    @Test func objectsKeepDocumentOrder() throws {
        let v = try jsonParse(#"{"z":1,"a":2,"m":{"y":3,"b":4}}"#)
        #expect(jsonShow(v) == #"{s:"z"=i:1,s:"a"=i:2,s:"m"={s:"y"=i:3,s:"b"=i:4}}"#)
    }

    @Test func duplicateKeysAreErrorsWithPath() {
        let top = jsonParseError(#"{"a":1,"b":2,"a":3}"#)
        #expect(top?.code == .duplicateKey)
        #expect(top?.path == "a")
        #expect(top?.byteOffset == 13)
        let nested = jsonParseError(#"{"x":[{}, {"k":1,"k":1}]}"#)
        #expect(nested?.code == .duplicateKey)
        #expect(nested?.path == "x[1].k")
    }

    @Test func trailingDataAndSyntaxErrors() {
        #expect(jsonParseError("{} x")?.code == .trailingData)
        #expect(jsonParseError("1 2")?.code == .trailingData)
        #expect(jsonParseError("")?.code == .empty)
        #expect(jsonParseError("  \n")?.code == .empty)
        #expect(jsonParseError("[1,]")?.code == .unexpectedCharacter)
        #expect(jsonParseError(#"{"a":1,}"#)?.code == .unexpectedCharacter)
        #expect(jsonParseError(#"{"a" 1}"#)?.code == .unexpectedCharacter)
        #expect(jsonParseError("{a:1}")?.code == .unexpectedCharacter)
        #expect(jsonParseError("[1")?.code == .unexpectedEnd)
        #expect(jsonParseError("tru")?.code == .unexpectedEnd)
        #expect(jsonParseError("nul1")?.code == .unexpectedCharacter)
        #expect(jsonParseError("'a'")?.code == .unexpectedCharacter)
        let e = jsonParseError(#"{"a":[1,2,x]}"#)
        #expect(e?.path == "a[2]")
        #expect(e?.byteOffset == 10)
    }

    @Test func depthLimit() throws {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(jsonShow(try jsonParse(ok)).hasPrefix("[[[["))
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(jsonParseError(deep)?.code == .tooDeep)
        let objects = String(repeating: #"{"a":"#, count: 65) + "1" + String(repeating: "}", count: 65)
        let e = jsonParseError(objects)
        #expect(e?.code == .tooDeep)
        #expect(e?.path == Array(repeating: "a", count: 64).joined(separator: "."))
        #expect(limitedError(Array("[[[1]]]".utf8), depth: 2)?.code == .tooDeep)
        // Far past the limit must fail cleanly, not overflow the stack.
        #expect(jsonParseError(String(repeating: "[", count: 100_000))?.code == .tooDeep)
    }

    func limitedError(_ bytes: [UInt8], depth: Int) -> JSONError? {
        do {
            _ = try JSONParser.parse(bytes, maxDepth: depth)
            return nil
        } catch { return error }
    }

    @Test func unsafeBufferEntryPoint() throws {
        let bytes = Array(#"{"k":[1,2.5]}"#.utf8)
        let v = try bytes.withUnsafeBytes { buf in try JSONParser.parse(buf) }
        #expect(jsonShow(v) == #"{s:"k"=[i:1,d:2.5]}"#)
    }
}

@Suite struct JSONParserStringTests {
    @Test func escapes() throws {
        #expect(jsonShow(try jsonParse(#""a\"b\\c\/d\be\ff\ng\rh\ti""#)) == jsonShow(.string("a\"b\\c/d\u{08}e\u{0C}f\ng\rh\ti")))
        #expect(jsonShow(try jsonParse(#""\u0041\u00e9\u4e2D\u0000""#)) == jsonShow(.string("Aé中\u{0}")))
    }

    @Test func surrogatePairs() throws {
        #expect(jsonShow(try jsonParse(#""\ud83d\ude00""#)) == jsonShow(.string("😀")))
        #expect(jsonShow(try jsonParse(#""x\uD834\uDD1Ey""#)) == jsonShow(.string("x𝄞y")))
    }

    @Test func loneSurrogatesAreErrors() {
        #expect(jsonParseError(#""\ud83d""#)?.code == .loneSurrogate)
        #expect(jsonParseError(#""\ud83dx""#)?.code == .loneSurrogate)
        #expect(jsonParseError(#""\ud83d\u0041""#)?.code == .loneSurrogate)
        #expect(jsonParseError(#""\ude00""#)?.code == .loneSurrogate)
        #expect(jsonParseError(#""\ud83d\ud83d""#)?.code == .loneSurrogate)
    }

    @Test func badEscapes() {
        #expect(jsonParseError(#""\x""#)?.code == .invalidEscape)
        #expect(jsonParseError(#""\u12""#)?.code == .invalidEscape)
        #expect(jsonParseError(#""\u12g4""#)?.code == .invalidEscape)
        #expect(jsonParseError(#""\'""#)?.code == .invalidEscape)
        #expect(jsonParseError("\"\\é\"")?.code == .invalidEscape)
        #expect(jsonParseError("\"\\\n\"")?.code == .invalidEscape)
        #expect(jsonParseError(#""abc\"#)?.code == .unexpectedEnd)
        #expect(jsonParseError(#""abc"#)?.code == .unexpectedEnd)
    }

    @Test func controlCharactersMustBeEscaped() {
        #expect(jsonParseError("\"a\nb\"")?.code == .controlCharacter)
        #expect(jsonParseError([0x22, 0x00, 0x22])?.code == .controlCharacter)
        #expect(jsonParseError([0x22, 0x1F, 0x22])?.code == .controlCharacter)
        // DEL is not a JSON control character.
        #expect((try? jsonParse(bytes: [0x22, 0x7F, 0x22])) != nil)
    }

    @Test func validUTF8Passes() throws {
        let text = "é中😀 \u{10FFFF} \u{FFFD} \u{7FF} \u{800} \u{FFFF} \u{10000}"
        #expect(jsonShow(try jsonParse("\"\(text)\"")) == jsonShow(.string(text)))
        // Long enough to go through the eight-bytes-at-a-time scan on both sides.
        let long = String(repeating: "abcdefgh", count: 5) + "ü" + String(repeating: "x", count: 17)
        #expect(jsonShow(try jsonParse("\"\(long)\"")) == jsonShow(.string(long)))
    }

    @Test(arguments: [
        ([0xC0, 0x80], "overlong"),  // NUL in two bytes
        ([0xC1, 0xBF], "overlong"),
        ([0xE0, 0x80, 0x80], "overlong"),
        ([0xE0, 0x9F, 0xBF], "overlong"),
        ([0xF0, 0x8F, 0xBF, 0xBF], "overlong"),
        ([0xED, 0xA0, 0x80], "surrogate"),  // U+D800
        ([0xED, 0xBF, 0xBF], "surrogate"),  // U+DFFF
        ([0xF4, 0x90, 0x80, 0x80], "above U+10FFFF"),
        ([0xF5, 0x80, 0x80, 0x80], "never appears"),
        ([0xFF], "never appears"),
        ([0x80], "continuation"),
        ([0xBF], "continuation"),
        ([0xC3], "truncated"),
        ([0xE4, 0xB8], "truncated"),
        ([0xF0, 0x9F, 0x98], "truncated"),
        ([0xE4, 0x41, 0x41], "truncated"),
    ] as [([UInt8], String)])
    func invalidUTF8InStrings(bytes: [UInt8], kind: String) {
        let doc: [UInt8] = Array(#"{"k":["ok","abcdefghij"#.utf8) + bytes + Array(#""]}"#.utf8)
        let e = jsonParseError(doc)
        #expect(e?.code == .invalidUTF8)
        #expect(e?.message.contains(kind) == true, "\(e?.message ?? "no error")")
        #expect(e?.path == "k[1]")
        #expect(e?.byteOffset == 22)
    }

    @Test func truncatedAtEndOfInput() {
        #expect(jsonParseError([0x22, 0xE4, 0xB8])?.code == .invalidUTF8)
    }

    @Test func invalidUTF8OutsideStrings() {
        #expect(jsonParseError([0x5B, 0xFF, 0x5D])?.code == .invalidUTF8)
        // Well-formed but misplaced non-ASCII text is a syntax error, not bad UTF-8.
        #expect(jsonParseError(Array("[é]".utf8))?.code == .unexpectedCharacter)
    }
}

@Suite struct JSONParserNumberTests {
    @Test func integers() throws {
        #expect(jsonShow(try jsonParse("0")) == "i:0")
        #expect(jsonShow(try jsonParse("-0")) == "i:0")
        #expect(jsonShow(try jsonParse("42")) == "i:42")
        #expect(jsonShow(try jsonParse("-17")) == "i:-17")
        #expect(jsonShow(try jsonParse("9223372036854775807")) == "i:9223372036854775807")
        #expect(jsonShow(try jsonParse("-9223372036854775808")) == "i:-9223372036854775808")
        #expect(jsonShow(try jsonParse("999999999999999999")) == "i:999999999999999999")
        #expect(jsonShow(try jsonParse("1000000000000000000")) == "i:1000000000000000000")
    }

    @Test func integersBeyondInt64BecomeDoubles() throws {
        #expect(jsonShow(try jsonParse("9223372036854775808")) == "d:9.223372036854776e+18")
        #expect(jsonShow(try jsonParse("-9223372036854775809")) == "d:-9.223372036854776e+18")
        #expect(jsonShow(try jsonParse("18446744073709551616")) == "d:1.8446744073709552e+19")
        #expect(jsonShow(try jsonParse(String(repeating: "9", count: 300))) == "d:1e+300")
        #expect(jsonParseError(String(repeating: "9", count: 400))?.code == .numberOutOfRange)
    }

    @Test func fractionsAndExponents() throws {
        #expect(jsonShow(try jsonParse("1.0")) == "d:1.0")
        #expect(jsonShow(try jsonParse("-0.0")) == "d:-0.0")
        if case .double(let d) = try jsonParse("-0.0") { #expect(d.sign == .minus) } else { Issue.record("not a double") }
        #expect(jsonShow(try jsonParse("0.1")) == "d:0.1")
        #expect(jsonShow(try jsonParse("1e2")) == "d:100.0")
        #expect(jsonShow(try jsonParse("1E+2")) == "d:100.0")
        #expect(jsonShow(try jsonParse("-2.5e-3")) == "d:-0.0025")
        #expect(jsonShow(try jsonParse("123456789012345678901234567890")) == "d:1.2345678901234568e+29")
        #expect(jsonShow(try jsonParse("1e-400")) == "d:0.0")
        #expect(jsonShow(try jsonParse("4.9406564584124654e-324")) == "d:5e-324")
        #expect(jsonShow(try jsonParse("1.7976931348623157e308")) == "d:1.7976931348623157e+308")
        #expect(jsonShow(try jsonParse("0.000000000000000000000000000001")) == "d:1e-30")
        #expect(jsonShow(try jsonParse("1e0000000000000000000000002")) == "d:100.0")
    }

    @Test func hugeNumbersAreOutOfRange() {
        #expect(jsonParseError("1e400")?.code == .numberOutOfRange)
        #expect(jsonParseError("-1e309")?.code == .numberOutOfRange)
        #expect(jsonParseError("1.8e308")?.code == .numberOutOfRange)
        #expect(jsonParseError("[1e99999999999999999999]")?.path == "[0]")
    }

    @Test func malformedNumbers() {
        for text in ["01", "-01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "1.e5", "NaN", "Infinity", "-Infinity"] {
            let code = jsonParseError(text)?.code
            #expect(code == .invalidNumber || code == .unexpectedCharacter || code == .trailingData, "\(text): \(String(describing: code))")
        }
        #expect(jsonParseError("01")?.code == .invalidNumber)
        #expect(jsonParseError("1.")?.code == .invalidNumber)
        #expect(jsonParseError("-")?.code == .invalidNumber)
        #expect(jsonParseError("1e+")?.code == .invalidNumber)
    }

    /// The fast path and the strtod fallback must both give correctly rounded results:
    /// every double's shortest text reads back to the same bits.
    @Test func randomDoublesReadBackExactly() throws {
        var rng = SeededRandom(seed: 0xD0AB1E)
        for i in 0..<20_000 {
            let d: Double
            switch i % 3 {
            case 0: d = Double(bitPattern: rng.next())
            case 1: d = Double(Int64(bitPattern: rng.next()) % 10_000_000) / 1000
            default: d = Double(rng.next() % 1_000_000_000) * 1e-7 - 50
            }
            guard d.isFinite else { continue }
            let text = d.description
            guard case .double(let back) = try jsonParse(text) else {
                Issue.record("\(text) did not parse as a double")
                continue
            }
            #expect(back.bitPattern == d.bitPattern, "\(text)")
            // Also without Swift's formatting: a plain decimal with many digits.
            let plain = String(format: "%.17g", d)
            if case .double(let p) = try jsonParse(plain) {
                #expect(p.bitPattern == Double(plain)!.bitPattern, "\(plain)")
            }
        }
    }
}

