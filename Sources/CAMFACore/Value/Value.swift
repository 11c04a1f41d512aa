import Foundation

/// A dynamically typed value: what events carry in custom fields, what expressions
/// compute, and what statistics and decisions report. CEL's value model, minus
/// protobuf messages.
public enum Value: Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case bytes([UInt8])
    case list([Value])
    case map(ValueMap)
    /// Nanoseconds.
    case duration(Int64)
    /// Nanoseconds since the Unix epoch, UTC.
    case timestamp(Int64)
    /// A CEL type value (`type(x)`), by its CEL name: "int", "string", "list", ...
    case type(String)
    /// A host object with a declared schema (the event, the user, statistics);
    /// fields are resolved to indexes when an expression is compiled.
    case object(any ValueObject)
}

/// Host objects expose fields by the index their schema gives them, so the hot path
/// never hashes a field name. Classes only: a class existential is one reference, so a
/// `Value` stays 32 bytes and copying one is a retain; a struct conformer made every
/// `Value` 48 bytes and every copy an indirect existential copy (a fifth of the
/// engine's time went to copying and destroying Values).
public protocol ValueObject: AnyObject, Sendable {
    var schema: ObjectSchema { get }
    /// nil means the field is absent (`has(x.f)` is false, selecting it is an error).
    func field(at index: Int) -> Value?
    /// Whether `field(at:)` has a value; objects that build fields when read answer
    /// this without building them.
    func hasField(at index: Int) -> Bool
    /// `o.f.key` for a map field `f`, read where the map is stored: `.some(nil)` when
    /// the key is absent, nil when the object does not store `f` as a map (callers then
    /// go through `field(at:)`). Fused `event.custom.x` reads use it, because copying the
    /// map out of the object retains its buffers and the read dominated those closures.
    func lookup(mapField index: Int, key: String) -> Value??
}

extension ValueObject {
    public func hasField(at index: Int) -> Bool { field(at: index) != nil }
    public func lookup(mapField index: Int, key: String) -> Value?? { nil }
}

/// Declares the fields of a host object and their CEL types.
public final class ObjectSchema: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    public let fieldNames: [String]
    public let fieldTypes: [CELType]
    private let indexByName: [String: Int]

    public init(name: String, fields: [(String, CELType)]) {
        self.name = name
        self.fieldNames = fields.map(\.0)
        self.fieldTypes = fields.map(\.1)
        var index: [String: Int] = [:]
        for (i, f) in fields.enumerated() { index[f.0] = i }
        self.indexByName = index
    }

    public func index(of field: String) -> Int? { indexByName[field] }
    public var description: String { name }
    public static func == (a: ObjectSchema, b: ObjectSchema) -> Bool { a === b }
    public func hash(into h: inout Hasher) { h.combine(ObjectIdentifier(self)) }
}

/// CEL's static types, as far as the engine's subset needs them.
public indirect enum CELType: Sendable, Hashable, CustomStringConvertible {
    case dyn
    case null
    case bool
    case int
    case uint
    case double
    case string
    case bytes
    case duration
    case timestamp
    case list(CELType)
    case map(CELType, CELType)
    case object(ObjectSchema)
    case type

    public var description: String {
        switch self {
        case .dyn: "dyn"
        case .null: "null_type"
        case .bool: "bool"
        case .int: "int"
        case .uint: "uint"
        case .double: "double"
        case .string: "string"
        case .bytes: "bytes"
        case .duration: "google.protobuf.Duration"
        case .timestamp: "google.protobuf.Timestamp"
        case .list(let e): "list(\(e))"
        case .map(let k, let v): "map(\(k), \(v))"
        case .object(let s): s.name
        case .type: "type"
        }
    }
}

// CEL's equality, ordering and type names for `Value`.

extension Value: Equatable {
    /// CEL equality: numbers compare by value across int, uint and double (NaN is
    /// unequal to everything), strings by code points without normalization, lists
    /// and maps structurally; values of unrelated types are simply unequal.
    public static func == (a: Value, b: Value) -> Bool { celEquals(a, b) }
}

public func celEquals(_ a: Value, _ b: Value) -> Bool {
    switch (a, b) {
    case (.null, .null): return true
    case (.bool(let x), .bool(let y)): return x == y
    case (.int(let x), .int(let y)): return x == y
    case (.uint(let x), .uint(let y)): return x == y
    case (.double(let x), .double(let y)): return x == y
    case (.int, .uint), (.uint, .int), (.int, .double), (.double, .int), (.uint, .double), (.double, .uint):
        return compareNumbers(a, b) == 0
    case (.string(let x), .string(let y)): return stringsEqual(x, y)
    case (.bytes(let x), .bytes(let y)): return x == y
    case (.duration(let x), .duration(let y)): return x == y
    case (.timestamp(let x), .timestamp(let y)): return x == y
    case (.type(let x), .type(let y)): return x == y
    case (.list(let x), .list(let y)):
        guard x.count == y.count else { return false }
        for i in x.indices where !celEquals(x[i], y[i]) { return false }
        return true
    case (.map(let x), .map(let y)):
        guard x.count == y.count else { return false }
        for (k, v) in x.entries {
            guard let w = y[k], celEquals(v, w) else { return false }
        }
        return true
    case (.object(let x), .object(let y)):
        guard x.schema === y.schema else { return false }
        for i in x.schema.fieldNames.indices {
            switch (x.field(at: i), y.field(at: i)) {
            case (nil, nil): continue
            case (let u?, let v?) where celEquals(u, v): continue
            default: return false
            }
        }
        return true
    default: return false
    }
}

/// Swift's `==` on String applies canonical equivalence; CEL compares code points,
/// which for valid UTF-8 means comparing bytes.
@inline(__always)
func stringsEqual(_ a: String, _ b: String) -> Bool {
    let n = a.utf8.count
    guard n == b.utf8.count else { return false }
    // Byte-identical strings are always canonically equivalent, so a false `==`
    // (cheap for small and ASCII strings) settles it.
    guard a == b else { return false }
    if n == 0 { return true }
    if let r = a.utf8.withContiguousStorageIfAvailable({ pa in
        b.utf8.withContiguousStorageIfAvailable { pb in memcmp(pa.baseAddress!, pb.baseAddress!, n) == 0 }
    }), let r {
        return r
    }
    return a.utf8.elementsEqual(b.utf8)
}

/// Numeric three-way comparison across int, uint and double; nil when either side is
/// NaN or not a number.
func compareNumbers(_ a: Value, _ b: Value) -> Int? {
    switch (a, b) {
    case (.int(let x), .int(let y)): return x < y ? -1 : (x > y ? 1 : 0)
    case (.uint(let x), .uint(let y)): return x < y ? -1 : (x > y ? 1 : 0)
    case (.double(let x), .double(let y)):
        if x.isNaN || y.isNaN { return nil }
        return x < y ? -1 : (x > y ? 1 : 0)
    case (.int(let x), .uint(let y)):
        if x < 0 { return -1 }
        let ux = UInt64(x)
        return ux < y ? -1 : (ux > y ? 1 : 0)
    case (.uint, .int): return compareNumbers(b, a).map { -$0 }
    case (.int(let x), .double(let y)): return compareIntDouble(x, y)
    case (.double, .int): return compareNumbers(b, a).map { -$0 }
    case (.uint(let x), .double(let y)):
        if y.isNaN { return nil }
        let dx = Double(x)
        return dx < y ? -1 : (dx > y ? 1 : 0)
    case (.double, .uint): return compareNumbers(b, a).map { -$0 }
    default: return nil
    }
}

/// CEL compares mixed int/double by converting the integer to double, so values
/// beyond 2^53 compare with the double's precision (cel-spec's "lossy" tests).
private func compareIntDouble(_ x: Int64, _ y: Double) -> Int? {
    if y.isNaN { return nil }
    let dx = Double(x)
    return dx < y ? -1 : (dx > y ? 1 : 0)
}

extension Value {
    /// The CEL type name, as `type(x)` reports it.
    public var celTypeName: String {
        switch self {
        case .null: "null_type"
        case .bool: "bool"
        case .int: "int"
        case .uint: "uint"
        case .double: "double"
        case .string: "string"
        case .bytes: "bytes"
        case .list: "list"
        case .map: "map"
        case .duration: "google.protobuf.Duration"
        case .timestamp: "google.protobuf.Timestamp"
        case .type: "type"
        case .object(let o): o.schema.name
        }
    }
}

extension Value: CustomStringConvertible {
    /// CEL-like literal syntax, for messages and debugging.
    public var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .uint(let u): return "\(u)u"
        case .double(let d): return formatDouble(d)
        case .string(let s): return quoteString(s)
        case .bytes(let b): return "b\"" + b.map { byte in
                byte >= 0x20 && byte < 0x7F && byte != 0x22 && byte != 0x5C
                    ? String(UnicodeScalar(byte)) : "\\x" + String(byte, radix: 16, uppercase: false).leftPadded(2)
            }.joined() + "\""
        case .list(let l): return "[" + l.map(\.description).joined(separator: ", ") + "]"
        case .map(let m): return "{" + m.entries.map { "\($0.0.description): \($0.1.description)" }.joined(separator: ", ") + "}"
        case .duration(let ns): return "duration(\"\(formatDuration(ns))\")"
        case .timestamp(let ns): return "timestamp(\"\(formatTimestamp(ns))\")"
        case .type(let t): return t
        case .object(let o):
            let fields = o.schema.fieldNames.indices.compactMap { i in
                o.field(at: i).map { "\(o.schema.fieldNames[i]): \($0.description)" }
            }
            return "\(o.schema.name){" + fields.joined(separator: ", ") + "}"
        }
    }
}

private func quoteString(_ s: String) -> String {
    var out = "\""
    for c in s.unicodeScalars {
        switch c {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if c.value < 0x20 { out += "\\x" + String(c.value, radix: 16).leftPadded(2) } else { out.unicodeScalars.append(c) }
        }
    }
    return out + "\""
}

extension String {
    func leftPadded(_ n: Int, with pad: Character = "0") -> String {
        count >= n ? self : String(repeating: pad, count: n - count) + self
    }
}

/// CEL's `string(double)`: the shortest text that reads back as the same double,
/// integral values without a fraction ("100"), exponents in Go's style ("1e+21").
func formatDouble(_ d: Double) -> String {
    if d.isNaN { return "NaN" }
    if d.isInfinite { return d > 0 ? "+Inf" : "-Inf" }
    if d == d.rounded(), abs(d) < 1e21 {
        let i = Int64(exactly: d) ?? 0
        if Double(i) == d { return d == 0 && d.sign == .minus ? "-0" : String(i) }
    }
    var s = "\(d)"  // Swift prints the shortest round-tripping digits
    if let e = s.firstIndex(of: "e") {
        // Go style: 1e+21, 1.5e-07.
        let mant = s[..<e]
        var exp = String(s[s.index(after: e)...])
        var sign = "+"
        if exp.hasPrefix("-") { sign = "-"; exp.removeFirst() } else if exp.hasPrefix("+") { exp.removeFirst() }
        var m = String(mant)
        if m.hasSuffix(".0") { m.removeLast(2) }
        s = m + "e" + sign + exp.leftPadded(2)
    }
    return s
}
