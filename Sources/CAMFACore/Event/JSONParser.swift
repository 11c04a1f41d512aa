/// Parses JSON text (RFC 8259) into `Value`s, strictly: the decoder in front of the
/// policy engine must never guess what a producer meant.
///
/// - objects become `.map` in document order; a repeated key is an error, because
///   different JSON libraries keep different copies and the producer's intent is lost;
/// - an integer literal (no fraction, no exponent) that fits Int64 becomes `.int`, every
///   other number `.double`; `-0` is the integer 0, `-0.0` keeps its sign;
/// - strings must be valid UTF-8, and `\u` escapes must form Unicode scalars (no lone
///   surrogates), so that every string that gets in can be written back unchanged;
/// - nesting is limited (default 64) so hostile input cannot exhaust the stack.
public enum JSONParser {
    public static let defaultMaxDepth = 64

    public static func parse(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth) throws(JSONError) -> Value {
        let result: Result<Value, JSONError> = bytes.withUnsafeBytes { buf in
            Result { () throws(JSONError) -> Value in try parse(buf, maxDepth: maxDepth) }
        }
        return try result.get()
    }

    public static func parse(_ buffer: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth) throws(JSONError) -> Value {
        guard let base = buffer.baseAddress, buffer.count > 0 else {
            throw JSONError(code: .empty, message: "no JSON value", byteOffset: 0)
        }
        var s = JSONScanner(base: base.assumingMemoryBound(to: UInt8.self), count: buffer.count, maxDepth: maxDepth)
        s.skipWhitespace()
        if s.atEnd { throw JSONError(code: .empty, message: "no JSON value", byteOffset: s.pos) }
        let v = try s.parseValue(depth: 0)
        try s.expectEnd()
        return v
    }

    public static func parse(_ text: String, maxDepth: Int = defaultMaxDepth) throws(JSONError) -> Value {
        try parse(Array(text.utf8), maxDepth: maxDepth)
    }
}

/// The byte-level cursor shared by the generic parser and the event decoder's fast path.
struct JSONScanner {
    let base: UnsafePointer<UInt8>
    let count: Int
    let maxDepth: Int
    var pos: Int = 0

    init(base: UnsafePointer<UInt8>, count: Int, maxDepth: Int) {
        self.base = base
        self.count = count
        self.maxDepth = maxDepth
    }

    var atEnd: Bool { pos >= count }

    @inline(__always) func peek() -> UInt8? { pos < count ? base[pos] : nil }

    @inline(__always) mutating func skipWhitespace() {
        while pos < count {
            switch base[pos] {
            case 0x20, 0x0A, 0x0D, 0x09: pos += 1
            default: return
            }
        }
    }

    mutating func expectEnd() throws(JSONError) {
        skipWhitespace()
        if pos < count {
            throw JSONError(code: .trailingData, message: "unexpected data after the JSON value", byteOffset: pos)
        }
    }

    /// Whitespace, then the given byte.
    @inline(__always) mutating func expect(_ byte: UInt8, _ what: StaticString) throws(JSONError) {
        skipWhitespace()
        guard pos < count else {
            throw JSONError(code: .unexpectedEnd, message: "unexpected end of input, expected \(what)", byteOffset: pos)
        }
        guard base[pos] == byte else { throw unexpected("expected \(what)") }
        pos += 1
    }

    /// An error for the byte at `pos`, telling a non-ASCII byte that is malformed
    /// UTF-8 apart from merely misplaced text.
    func unexpected(_ expectation: String) -> JSONError {
        if pos >= count {
            return JSONError(code: .unexpectedEnd, message: "unexpected end of input, \(expectation)", byteOffset: pos)
        }
        if base[pos] >= 0x80 {
            var probe = self
            if let e = probe.utf8Problem() { return e }
        }
        return JSONError(code: .unexpectedCharacter, message: "unexpected character, \(expectation)", byteOffset: pos)
    }

    // MARK: values

    mutating func parseValue(depth: Int) throws(JSONError) -> Value {
        skipWhitespace()
        guard pos < count else {
            throw JSONError(code: .unexpectedEnd, message: "unexpected end of input, expected a value", byteOffset: pos)
        }
        switch base[pos] {
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "{"): return .map(try parseObject(depth: depth + 1))
        case UInt8(ascii: "["): return .list(try parseArray(depth: depth + 1))
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default: throw unexpected("expected a value")
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONError) {
        let n = word.utf8CodeUnitCount
        let w = word.utf8Start
        for i in 0..<n {
            guard pos + i < count else {
                throw JSONError(code: .unexpectedEnd, message: "unexpected end of input inside `\(word)`", byteOffset: pos + i)
            }
            guard base[pos + i] == w[i] else {
                throw JSONError(code: .unexpectedCharacter, message: "invalid literal, expected `\(word)`", byteOffset: pos + i)
            }
        }
        pos += n
    }

    func checkDepth(_ depth: Int) throws(JSONError) {
        if depth > maxDepth {
            throw JSONError(code: .tooDeep, message: "nesting deeper than \(maxDepth) levels", byteOffset: pos)
        }
    }

    mutating func parseObject(depth: Int) throws(JSONError) -> ValueMap {
        try checkDepth(depth)
        pos += 1
        var map = ValueMap()
        skipWhitespace()
        if pos < count, base[pos] == UInt8(ascii: "}") {
            pos += 1
            return map
        }
        while true {
            skipWhitespace()
            guard pos < count, base[pos] == UInt8(ascii: "\"") else { throw unexpected("expected a string key") }
            let keyOffset = pos
            let key = try parseString()
            do throws(JSONError) {
                try expect(UInt8(ascii: ":"), "':' after an object key")
                let value = try parseValue(depth: depth)
                let before = map.count
                map[string: key] = value
                if map.count == before {
                    throw JSONError(code: .duplicateKey, message: "duplicate key", byteOffset: keyOffset)
                }
            } catch {
                throw error.inside(key: key)
            }
            skipWhitespace()
            guard pos < count else { throw unexpected("expected ',' or '}' in an object") }
            switch base[pos] {
            case UInt8(ascii: ","): pos += 1
            case UInt8(ascii: "}"): pos += 1; return map
            default: throw unexpected("expected ',' or '}' in an object")
            }
        }
    }

    mutating func parseArray(depth: Int) throws(JSONError) -> [Value] {
        try checkDepth(depth)
        pos += 1
        var list: [Value] = []
        skipWhitespace()
        if pos < count, base[pos] == UInt8(ascii: "]") {
            pos += 1
            return list
        }
        while true {
            do throws(JSONError) {
                list.append(try parseValue(depth: depth))
            } catch {
                throw error.inside(index: list.count)
            }
            skipWhitespace()
            guard pos < count else { throw unexpected("expected ',' or ']' in an array") }
            switch base[pos] {
            case UInt8(ascii: ","): pos += 1
            case UInt8(ascii: "]"): pos += 1; return list
            default: throw unexpected("expected ',' or ']' in an array")
            }
        }
    }

    /// Skips a value the caller does not need, with the same checks as parsing it.
    mutating func skipValue(depth: Int) throws(JSONError) {
        _ = try parseValue(depth: depth)
    }

    // MARK: strings

    /// At the opening quote. Returns the string and leaves `pos` after the closing quote.
    mutating func parseString() throws(JSONError) -> String {
        let (start, end, clean) = try scanString()
        if clean {
            return String(decoding: UnsafeBufferPointer(start: base + start, count: end - start), as: UTF8.self)
        }
        return String(decoding: try unescape(start: start, end: end), as: UTF8.self)
    }

    /// Finds the end of the string at `pos` (the opening quote), validating UTF-8 and
    /// control characters. Returns the content range and whether it has no escapes,
    /// so keys can be matched in place without building a String.
    @inline(__always)
    mutating func scanString() throws(JSONError) -> (start: Int, end: Int, clean: Bool) {
        pos += 1
        let start = pos
        var clean = true
        while true {
            // Eight bytes at a time while none is a quote, a backslash, a control
            // character or non-ASCII: most of an event's bytes are plain ASCII text.
            while pos &+ 8 <= count {
                let w = UInt64(littleEndian: UnsafeRawPointer(base + pos).loadUnaligned(as: UInt64.self))
                let ones: UInt64 = 0x0101_0101_0101_0101
                let high: UInt64 = 0x8080_8080_8080_8080
                let q = w ^ (ones &* 0x22)
                let b = w ^ (ones &* 0x5C)
                let special =
                    ((q &- ones) & ~q) | ((b &- ones) & ~b) | ((w &- ones &* 0x20) & ~w) | w
                let hits = special & high
                if hits != 0 {
                    // Borrows only flag bytes above a real hit, so the lowest flag is
                    // the first byte that needs a look.
                    pos &+= hits.trailingZeroBitCount >> 3
                    break
                }
                pos &+= 8
            }
            guard pos < count else {
                throw JSONError(code: .unexpectedEnd, message: "unterminated string", byteOffset: pos)
            }
            let c = base[pos]
            if c == UInt8(ascii: "\"") {
                let end = pos
                pos += 1
                return (start, end, clean)
            } else if c == UInt8(ascii: "\\") {
                clean = false
                guard pos + 1 < count else {
                    throw JSONError(code: .unexpectedEnd, message: "unterminated string", byteOffset: count)
                }
                // The escape's full validity is checked when unescaping; here it is
                // enough not to mistake an escaped quote for the end, and not to step
                // into the middle of a UTF-8 sequence.
                let next = base[pos + 1]
                if next < 0x20 || next >= 0x80 {
                    throw JSONError(code: .invalidEscape, message: "invalid escape sequence", byteOffset: pos)
                }
                pos += 2
            } else if c < 0x20 {
                throw JSONError(code: .controlCharacter, message: "unescaped control character in a string", byteOffset: pos)
            } else if c < 0x80 {
                pos += 1
            } else {
                if let e = utf8Problem() { throw e }
            }
        }
    }

    /// Validates one UTF-8 sequence starting at `pos` (a byte >= 0x80) and steps over
    /// it; returns the error instead when it is malformed.
    @inline(__always)
    mutating func utf8Problem() -> JSONError? {
        let c = base[pos]
        let need: Int
        var lo: UInt8 = 0x80
        var hi: UInt8 = 0xBF
        switch c {
        case 0x80...0xBF:
            return JSONError(code: .invalidUTF8, message: "invalid UTF-8: unexpected continuation byte", byteOffset: pos)
        case 0xC0, 0xC1:
            return JSONError(code: .invalidUTF8, message: "invalid UTF-8: overlong encoding", byteOffset: pos)
        case 0xC2...0xDF: need = 1
        case 0xE0: need = 2; lo = 0xA0
        case 0xED: need = 2; hi = 0x9F
        case 0xE1...0xEF: need = 2
        case 0xF0: need = 3; lo = 0x90
        case 0xF4: need = 3; hi = 0x8F
        case 0xF1...0xF3: need = 3
        default:
            return JSONError(code: .invalidUTF8, message: "invalid UTF-8: byte that never appears in UTF-8", byteOffset: pos)
        }
        for i in 1...need {
            guard pos + i < count else {
                return JSONError(code: .invalidUTF8, message: "invalid UTF-8: truncated sequence", byteOffset: pos)
            }
            let b = base[pos + i]
            let (l, h) = i == 1 ? (lo, hi) : (UInt8(0x80), UInt8(0xBF))
            if b < l || b > h {
                if b & 0xC0 != 0x80 {
                    return JSONError(code: .invalidUTF8, message: "invalid UTF-8: truncated sequence", byteOffset: pos)
                }
                let what =
                    switch c {
                    case 0xE0, 0xF0: "overlong encoding"
                    case 0xED: "encoded UTF-16 surrogate"
                    default: "code point above U+10FFFF"
                    }
                return JSONError(code: .invalidUTF8, message: "invalid UTF-8: \(what)", byteOffset: pos)
            }
        }
        pos += need + 1
        return nil
    }

    /// Decodes the escapes of an already scanned (so UTF-8-valid) string body.
    func unescape(start: Int, end: Int) throws(JSONError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(end - start)
        var i = start
        while i < end {
            let c = base[i]
            if c != UInt8(ascii: "\\") {
                out.append(c)
                i += 1
                continue
            }
            let e = base[i + 1]
            switch e {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4(at: i + 2, end: end)
                var width = 6
                if scalar >= 0xDC00 && scalar <= 0xDFFF {
                    throw JSONError(code: .loneSurrogate, message: "\\u escape of a low surrogate without a high surrogate before it", byteOffset: i)
                }
                if scalar >= 0xD800 && scalar <= 0xDBFF {
                    guard i + 11 < end + 1, base[i + 6] == UInt8(ascii: "\\"), base[i + 7] == UInt8(ascii: "u") else {
                        throw JSONError(code: .loneSurrogate, message: "\\u escape of a high surrogate not followed by a low surrogate", byteOffset: i)
                    }
                    let low = try hex4(at: i + 8, end: end)
                    guard low >= 0xDC00 && low <= 0xDFFF else {
                        throw JSONError(code: .loneSurrogate, message: "\\u escape of a high surrogate not followed by a low surrogate", byteOffset: i)
                    }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    width = 12
                }
                appendUTF8(scalar, to: &out)
                i += width
                continue
            default:
                throw JSONError(code: .invalidEscape, message: "invalid escape sequence", byteOffset: i)
            }
            i += 2
        }
        return out
    }

    func hex4(at i: Int, end: Int) throws(JSONError) -> UInt32 {
        guard i + 4 <= end else {
            throw JSONError(code: .invalidEscape, message: "\\u escape needs four hex digits", byteOffset: i - 2)
        }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = base[i + k]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default:
                throw JSONError(code: .invalidEscape, message: "\\u escape needs four hex digits", byteOffset: i - 2)
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }

    // MARK: numbers

    mutating func parseNumber() throws(JSONError) -> Value {
        let start = pos
        var negative = false
        if base[pos] == UInt8(ascii: "-") {
            negative = true
            pos += 1
        }
        let intStart = pos
        guard pos < count, isDigit(base[pos]) else {
            throw JSONError(code: .invalidNumber, message: "invalid number: expected a digit", byteOffset: pos)
        }
        if base[pos] == UInt8(ascii: "0") {
            pos += 1
            if pos < count, isDigit(base[pos]) {
                throw JSONError(code: .invalidNumber, message: "invalid number: leading zero", byteOffset: start)
            }
        } else {
            while pos < count, isDigit(base[pos]) { pos += 1 }
        }
        let intEnd = pos
        var integral = true
        var fracStart = pos
        var fracEnd = pos
        if pos < count, base[pos] == UInt8(ascii: ".") {
            integral = false
            pos += 1
            fracStart = pos
            guard pos < count, isDigit(base[pos]) else {
                throw JSONError(code: .invalidNumber, message: "invalid number: expected a digit after '.'", byteOffset: pos)
            }
            while pos < count, isDigit(base[pos]) { pos += 1 }
            fracEnd = pos
        }
        var exponent = 0
        if pos < count, base[pos] | 0x20 == UInt8(ascii: "e") {
            integral = false
            pos += 1
            var expNegative = false
            if pos < count, base[pos] == UInt8(ascii: "+") || base[pos] == UInt8(ascii: "-") {
                expNegative = base[pos] == UInt8(ascii: "-")
                pos += 1
            }
            guard pos < count, isDigit(base[pos]) else {
                throw JSONError(code: .invalidNumber, message: "invalid number: expected a digit in the exponent", byteOffset: pos)
            }
            while pos < count, isDigit(base[pos]) {
                // Clamped: beyond this the value is 0 or infinite either way.
                if exponent < 100_000 { exponent = exponent * 10 + Int(base[pos] - UInt8(ascii: "0")) }
                pos += 1
            }
            if expNegative { exponent = -exponent }
        }

        if integral {
            let digits = intEnd - intStart
            if digits <= 18 {
                // Cannot overflow: 18 digits stay below Int64.max.
                var v: Int64 = 0
                for i in intStart..<intEnd { v = v &* 10 &+ Int64(base[i] &- UInt8(ascii: "0")) }
                return .int(negative ? -v : v)
            }
            // Accumulating toward the sign reaches Int64.min without overflowing.
            var v: Int64 = 0
            var overflow = false
            for i in intStart..<intEnd {
                let d = Int64(base[i] &- UInt8(ascii: "0"))
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (r, o2) = negative ? m.subtractingReportingOverflow(d) : m.addingReportingOverflow(d)
                if o1 || o2 {
                    overflow = true
                    break
                }
                v = r
            }
            if !overflow { return .int(v) }
        }

        // Clinger's fast path: a mantissa of at most 2^53 and a power of ten up to 1e22
        // are both exact Doubles, so one correctly rounded multiply or divide gives the
        // correctly rounded result. Anything else goes to the C library's strtod.
        var mantissa: UInt64 = 0
        var significant = 0
        var dropped = false
        var scale = 0
        for i in intStart..<intEnd {
            let d = UInt64(base[i] &- UInt8(ascii: "0"))
            if significant < 19 {
                mantissa = mantissa &* 10 &+ d
                if mantissa != 0 { significant += 1 }
            } else {
                dropped = true
                scale += 1
            }
        }
        for i in fracStart..<fracEnd {
            let d = UInt64(base[i] &- UInt8(ascii: "0"))
            if significant < 19 {
                mantissa = mantissa &* 10 &+ d
                if mantissa != 0 { significant += 1 }
                scale -= 1
            } else if d != 0 {
                dropped = true
            }
        }
        let e10 = scale + exponent
        var result: Double
        if !dropped, mantissa <= 1 << 53, e10 >= -22, e10 <= 22 {
            result = Double(mantissa)
            if e10 > 0 {
                result *= JSONScanner.powersOfTen[e10]
            } else if e10 < 0 {
                result /= JSONScanner.powersOfTen[-e10]
            }
            if negative { result = -result }
        } else {
            let text = String(decoding: UnsafeBufferPointer(start: base + start, count: pos - start), as: UTF8.self)
            guard let d = Double(text) else {
                throw JSONError(code: .invalidNumber, message: "invalid number", byteOffset: start)
            }
            result = d
        }
        guard result.isFinite else {
            throw JSONError(code: .numberOutOfRange, message: "number too large for a double", byteOffset: start)
        }
        return .double(result)
    }

    static let powersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ]
}

@inline(__always) func isDigit(_ c: UInt8) -> Bool { c &- UInt8(ascii: "0") < 10 }

@inline(__always) func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
    switch scalar {
    case 0..<0x80:
        out.append(UInt8(scalar))
    case 0x80..<0x800:
        out.append(UInt8(0xC0 | scalar >> 6))
        out.append(UInt8(0x80 | scalar & 0x3F))
    case 0x800..<0x10000:
        out.append(UInt8(0xE0 | scalar >> 12))
        out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
        out.append(UInt8(0x80 | scalar & 0x3F))
    default:
        out.append(UInt8(0xF0 | scalar >> 18))
        out.append(UInt8(0x80 | scalar >> 12 & 0x3F))
        out.append(UInt8(0x80 | scalar >> 6 & 0x3F))
        out.append(UInt8(0x80 | scalar & 0x3F))
    }
}
