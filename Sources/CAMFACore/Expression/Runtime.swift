// Runtime semantics of CEL's operators and functions over `Value`. The checker picks
// these (or a specialised closure) at compile time; they re-check the dynamic cases.

/// Storage during one evaluation: the activation's variables (shared, never copied)
/// and the comprehension variables, which live in stack memory for the call.
struct Frame {
    let slots: [Value]
    let locals: UnsafeMutableBufferPointer<Value>

    static var empty: Frame { Frame(slots: [], locals: UnsafeMutableBufferPointer(start: nil, count: 0)) }
}

typealias Eval = @Sendable (inout Frame) throws(EvalError) -> Value

enum Ops {
    static func noOverload(_ fn: String, _ args: Value...) -> EvalError {
        EvalError("no such overload: \(fn) applied to (\(args.map(\.celTypeName).joined(separator: ", ")))")
    }
    static let overflow = EvalError("return error for overflow")

    static func add(_ a: Value, _ b: Value) throws(EvalError) -> Value {
        switch (a, b) {
        case (.int(let x), .int(let y)):
            let (r, o) = x.addingReportingOverflow(y)
            if o { throw overflow }
            return .int(r)
        case (.uint(let x), .uint(let y)):
            let (r, o) = x.addingReportingOverflow(y)
            if o { throw overflow }
            return .uint(r)
        case (.double(let x), .double(let y)): return .double(x + y)
        case (.string(let x), .string(let y)): return .string(x + y)
        case (.bytes(let x), .bytes(let y)): return .bytes(x + y)
        case (.list(let x), .list(let y)): return .list(x + y)
        case (.duration(let x), .duration(let y)):
            let (r, o) = x.addingReportingOverflow(y)
            if o { throw EvalError("duration out of range") }
            return .duration(r)
        case (.timestamp(let x), .duration(let y)), (.duration(let y), .timestamp(let x)):
            let (r, o) = x.addingReportingOverflow(y)
            if o { throw EvalError("timestamp out of range") }
            return .timestamp(r)
        default: throw noOverload("_+_", a, b)
        }
    }

    static func subtract(_ a: Value, _ b: Value) throws(EvalError) -> Value {
        switch (a, b) {
        case (.int(let x), .int(let y)):
            let (r, o) = x.subtractingReportingOverflow(y)
            if o { throw overflow }
            return .int(r)
        case (.uint(let x), .uint(let y)):
            let (r, o) = x.subtractingReportingOverflow(y)
            if o { throw overflow }
            return .uint(r)
        case (.double(let x), .double(let y)): return .double(x - y)
        case (.duration(let x), .duration(let y)):
            let (r, o) = x.subtractingReportingOverflow(y)
            if o { throw EvalError("duration out of range") }
            return .duration(r)
        case (.timestamp(let x), .timestamp(let y)):
            let (r, o) = x.subtractingReportingOverflow(y)
            if o { throw EvalError("duration out of range") }
            return .duration(r)
        case (.timestamp(let x), .duration(let y)):
            let (r, o) = x.subtractingReportingOverflow(y)
            if o { throw EvalError("timestamp out of range") }
            return .timestamp(r)
        default: throw noOverload("_-_", a, b)
        }
    }

    static func multiply(_ a: Value, _ b: Value) throws(EvalError) -> Value {
        switch (a, b) {
        case (.int(let x), .int(let y)):
            let (r, o) = x.multipliedReportingOverflow(by: y)
            if o { throw overflow }
            return .int(r)
        case (.uint(let x), .uint(let y)):
            let (r, o) = x.multipliedReportingOverflow(by: y)
            if o { throw overflow }
            return .uint(r)
        case (.double(let x), .double(let y)): return .double(x * y)
        default: throw noOverload("_*_", a, b)
        }
    }

    static func divide(_ a: Value, _ b: Value) throws(EvalError) -> Value {
        switch (a, b) {
        case (.int(let x), .int(let y)):
            if y == 0 { throw EvalError("divide by zero") }
            let (r, o) = x.dividedReportingOverflow(by: y)
            if o { throw overflow }
            return .int(r)
        case (.uint(let x), .uint(let y)):
            if y == 0 { throw EvalError("divide by zero") }
            return .uint(x / y)
        case (.double(let x), .double(let y)): return .double(x / y)
        default: throw noOverload("_/_", a, b)
        }
    }

    static func modulo(_ a: Value, _ b: Value) throws(EvalError) -> Value {
        switch (a, b) {
        case (.int(let x), .int(let y)):
            if y == 0 { throw EvalError("modulus by zero") }
            let (r, o) = x.remainderReportingOverflow(dividingBy: y)
            if o { throw overflow }
            return .int(r)
        case (.uint(let x), .uint(let y)):
            if y == 0 { throw EvalError("modulus by zero") }
            return .uint(x % y)
        default: throw noOverload("_%_", a, b)
        }
    }

    static func negate(_ a: Value) throws(EvalError) -> Value {
        switch a {
        case .int(let x):
            if x == .min { throw overflow }
            return .int(-x)
        case .double(let x): return .double(-x)
        case .duration(let x):
            if x == .min { throw EvalError("duration out of range") }
            return .duration(-x)
        default: throw noOverload("-_", a)
        }
    }

    static func not(_ a: Value) throws(EvalError) -> Value {
        guard case .bool(let b) = a else { throw noOverload("!_", a) }
        return .bool(!b)
    }

    /// Three-way ordering for `<`, `<=`, `>`, `>=`; nil for NaN (every comparison false).
    static func compare(_ fn: String, _ a: Value, _ b: Value) throws(EvalError) -> Int? {
        switch (a, b) {
        case (.int, .int), (.uint, .uint), (.double, .double), (.int, .uint), (.uint, .int),
            (.int, .double), (.double, .int), (.uint, .double), (.double, .uint):
            return compareNumbers(a, b)
        case (.string(let x), .string(let y)):
            // UTF-8 byte order is code point order.
            if stringsEqual(x, y) { return 0 }
            return x.utf8.lexicographicallyPrecedes(y.utf8) ? -1 : 1
        case (.bytes(let x), .bytes(let y)):
            if x == y { return 0 }
            return x.lexicographicallyPrecedes(y) ? -1 : 1
        case (.bool(let x), .bool(let y)): return x == y ? 0 : (!x ? -1 : 1)
        case (.duration(let x), .duration(let y)), (.timestamp(let x), .timestamp(let y)):
            return x < y ? -1 : (x > y ? 1 : 0)
        default: throw noOverload(fn, a, b)
        }
    }

    /// `x in [literal strings]`: the common policy shape (`country in ['CN', 'US']`).
    static func containsString(_ list: [String], _ set: Set<String>?, _ item: Value) throws(EvalError) -> Value {
        guard case .string(let s) = item else {
            return try contains(.list(list.map { .string($0) }), item)
        }
        if let set {
            // Set<String> matches canonically equivalent strings; confirm the bytes.
            guard let i = set.firstIndex(of: s) else { return .bool(false) }
            if stringsEqual(set[i], s) { return .bool(true) }
        }
        for e in list where stringsEqual(e, s) { return .bool(true) }
        return .bool(false)
    }

    static func contains(_ collection: Value, _ item: Value) throws(EvalError) -> Value {
        switch collection {
        case .list(let l):
            for e in l where celEquals(e, item) { return .bool(true) }
            return .bool(false)
        case .map(let m): return .bool(m.contains(item))
        default: throw noOverload("@in", item, collection)
        }
    }

    static func index(_ c: Value, _ i: Value) throws(EvalError) -> Value {
        switch c {
        case .list(let l):
            let n: Int64
            switch i {
            case .int(let x): n = x
            case .uint(let x):
                guard let v = Int64(exactly: x) else { throw EvalError("invalid_argument: index out of range") }
                n = v
            case .double(let d):
                guard let v = Int64(exactly: d) else { throw EvalError("invalid_argument: index \(formatDouble(d)) is not an integer") }
                n = v
            default: throw EvalError("invalid_argument: no such overload for list index of type \(i.celTypeName)")
            }
            guard n >= 0 && n < l.count else { throw EvalError("invalid_argument: index \(n) out of range [0, \(l.count))") }
            return l[Int(n)]
        case .map(let m):
            guard let v = m[i] else { throw EvalError("no such key: \(i)") }
            return v
        default: throw noOverload("_[_]", c, i)
        }
    }

    static func size(_ v: Value) throws(EvalError) -> Value {
        switch v {
        case .string(let s): return .int(Int64(s.unicodeScalars.count))
        case .bytes(let b): return .int(Int64(b.count))
        case .list(let l): return .int(Int64(l.count))
        case .map(let m): return .int(Int64(m.count))
        default: throw noOverload("size", v)
        }
    }

    /// Field selection on a map or, when the static type was not known, an object.
    /// The fused closures' field read: by index when the slot holds the object its schema
    /// was compiled for, by name otherwise.
    @inline(__always)
    static func selectField(_ v: Value, _ schema: ObjectSchema, _ index: Int, _ name: String) throws(EvalError) -> Value {
        if case .object(let o) = v, o.schema === schema {
            guard let r = o.field(at: index) else { throw EvalError("no such field: \(name)") }
            return r
        }
        return try selectDynamic(v, name)
    }

    static func selectDynamic(_ v: Value, _ field: String) throws(EvalError) -> Value {
        switch v {
        case .map(let m):
            guard let r = m[string: field] else { throw EvalError("no such key: \(field)") }
            return r
        case .object(let o):
            guard let i = o.schema.index(of: field), let r = o.field(at: i) else {
                throw EvalError("no such field: \(field)")
            }
            return r
        default: throw EvalError("no such overload: field selection on \(v.celTypeName)")
        }
    }

    static func hasDynamic(_ v: Value, _ field: String) throws(EvalError) -> Value {
        switch v {
        case .map(let m): return .bool(m.contains(.string(field)))
        case .object(let o):
            guard let i = o.schema.index(of: field) else { throw EvalError("no such field: \(field)") }
            return .bool(o.field(at: i) != nil)
        default: throw EvalError("no such overload: has() on \(v.celTypeName)")
        }
    }

    // MARK: strings

    static func bytesContains(_ hay: String.UTF8View, _ needle: String.UTF8View) -> Bool {
        let n = needle.count
        if n == 0 { return true }
        let h = Array(hay), nd = Array(needle)
        if h.count < n { return false }
        outer: for start in 0...(h.count - n) {
            for j in 0..<n where h[start + j] != nd[j] { continue outer }
            return true
        }
        return false
    }

    static func stringFunction(_ fn: String, _ s: Value, _ arg: Value) throws(EvalError) -> Value {
        guard case .string(let a) = s, case .string(let b) = arg else { throw noOverload(fn, s, arg) }
        switch fn {
        case "contains": return .bool(bytesContains(a.utf8, b.utf8))
        case "startsWith": return .bool(a.utf8.starts(with: b.utf8))
        case "endsWith": return .bool(a.utf8.count >= b.utf8.count && a.utf8.reversed().starts(with: b.utf8.reversed()))
        default: throw noOverload(fn, s, arg)
        }
    }

    // MARK: conversions

    static func toInt(_ v: Value) throws(EvalError) -> Value {
        switch v {
        case .int: return v
        case .uint(let u):
            guard let i = Int64(exactly: u) else { throw EvalError("range error: \(u)u does not fit in int") }
            return .int(i)
        case .double(let d):
            // Both ends exclusive: Int64.max is not representable as a double and
            // -2^63 converts but CEL treats it as out of range.
            guard d.isFinite, d > -9223372036854775808.0, d < 9223372036854775808.0 else {
                throw EvalError("range error: \(formatDouble(d)) does not fit in int")
            }
            return .int(Int64(d.rounded(.towardZero)))
        case .string(let s):
            guard let i = Int64(s) else { throw EvalError("cannot convert '\(s)' to int") }
            return .int(i)
        case .timestamp(let ns):
            // Seconds, floored; `ns - 999_999_999` would overflow for the earliest timestamps.
            let (q, r) = ns.quotientAndRemainder(dividingBy: 1_000_000_000)
            return .int(r < 0 ? q - 1 : q)
        case .duration(let ns): return .int(ns)
        default: throw noOverload("int", v)
        }
    }

    static func toUint(_ v: Value) throws(EvalError) -> Value {
        switch v {
        case .uint: return v
        case .int(let i):
            guard i >= 0 else { throw EvalError("range error: \(i) does not fit in uint") }
            return .uint(UInt64(i))
        case .double(let d):
            guard d.isFinite, d > -1, d < 18446744073709551616.0 else {
                throw EvalError("range error: \(formatDouble(d)) does not fit in uint")
            }
            return .uint(UInt64(d.rounded(.towardZero)))
        case .string(let s):
            guard let u = UInt64(s) else { throw EvalError("cannot convert '\(s)' to uint") }
            return .uint(u)
        default: throw noOverload("uint", v)
        }
    }

    static func toDouble(_ v: Value) throws(EvalError) -> Value {
        switch v {
        case .double: return v
        case .int(let i): return .double(Double(i))
        case .uint(let u): return .double(Double(u))
        case .string(let s):
            guard let d = Double(s) else { throw EvalError("cannot convert '\(s)' to double") }
            return .double(d)
        default: throw noOverload("double", v)
        }
    }

    static func toString(_ v: Value) throws(EvalError) -> Value {
        switch v {
        case .string: return v
        case .int(let i): return .string(String(i))
        case .uint(let u): return .string(String(u))
        case .double(let d): return .string(formatDouble(d))
        case .bool(let b): return .string(b ? "true" : "false")
        case .bytes(let b):
            guard let s = String(validating: b, as: UTF8.self) else { throw EvalError("invalid UTF-8 in bytes") }
            return .string(s)
        case .duration(let ns): return .string(formatDuration(ns))
        case .timestamp(let ns): return .string(formatTimestamp(ns))
        default: throw noOverload("string", v)
        }
    }

    static func toBool(_ v: Value) throws(EvalError) -> Value {
        switch v {
        case .bool: return v
        case .string(let s):
            switch s {
            case "1", "t", "T", "true", "TRUE", "True": return .bool(true)
            case "0", "f", "F", "false", "FALSE", "False": return .bool(false)
            default: throw EvalError("Type conversion error: cannot convert '\(s)' to bool")
            }
        default: throw noOverload("bool", v)
        }
    }

    static func toBytes(_ v: Value) throws(EvalError) -> Value {
        switch v {
        case .bytes: return v
        case .string(let s): return .bytes(Array(s.utf8))
        default: throw noOverload("bytes", v)
        }
    }

    static func toDuration(_ v: Value) throws(EvalError) -> Value {
        switch v {
        case .duration: return v
        case .string(let s): return .duration(try parseDuration(s).get())
        default: throw noOverload("duration", v)
        }
    }

    static func toTimestamp(_ v: Value) throws(EvalError) -> Value {
        switch v {
        case .timestamp: return v
        case .string(let s): return .timestamp(try parseTimestamp(s).get())
        case .int(let secs): return .timestamp(try timestampFromSeconds(secs, nanos: 0).get())
        default: throw noOverload("timestamp", v)
        }
    }

    /// `getHours()` and friends on timestamps (optionally in a fixed-offset zone) and
    /// durations.
    static func timeAccessor(_ fn: String, _ v: Value, zone: Value?) throws(EvalError) -> Value {
        if case .duration(let ns) = v, zone == nil {
            switch fn {
            case "getHours": return .int(ns / 3_600_000_000_000)
            case "getMinutes": return .int(ns / 60_000_000_000)
            case "getSeconds": return .int(ns / 1_000_000_000)
            case "getMilliseconds": return .int((ns / 1_000_000) % 1000)
            default: throw noOverload(fn, v)
            }
        }
        guard case .timestamp(let ns) = v else { throw noOverload(fn, v) }
        var offset: Int64 = 0
        if let zone {
            guard case .string(let z) = zone else { throw noOverload(fn, v, zone) }
            guard let o = parseZoneOffset(z) else { throw EvalError("unsupported time zone '\(z)'") }
            offset = o
        }
        var secs = ns / 1_000_000_000
        var frac = ns % 1_000_000_000
        if frac < 0 { frac += 1_000_000_000; secs -= 1 }
        let p = timeParts(secs + offset)
        switch fn {
        case "getFullYear": return .int(p.year)
        case "getMonth": return .int(p.month - 1)
        case "getDate": return .int(p.day)
        case "getDayOfMonth": return .int(p.day - 1)
        case "getDayOfWeek": return .int(p.dayOfWeek)
        case "getDayOfYear": return .int(p.dayOfYear)
        case "getHours": return .int(p.hour)
        case "getMinutes": return .int(p.minute)
        case "getSeconds": return .int(p.second)
        case "getMilliseconds": return .int(frac / 1_000_000)
        default: throw noOverload(fn, v)
        }
    }
}

/// Swift's Regex is a value that is not declared Sendable because it lowers its
/// program lazily (with an atomic publish). Matching once here lowers it before the
/// expression is shared, so later matches from any thread only read it.
final class CompiledRegex: @unchecked Sendable {
    let regex: Regex<AnyRegexOutput>
    init(_ pattern: String) throws {
        // CEL (RE2) matches by code point, not by grapheme cluster.
        regex = try Regex(pattern).matchingSemantics(.unicodeScalar)
        _ = try regex.firstMatch(in: "")
    }
    func matches(_ s: String) -> Bool {
        (try? regex.firstMatch(in: s)) != nil
    }
}
