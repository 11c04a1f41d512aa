/// Writes JSON deterministically: the same values always give the same bytes (maps in
/// insertion order, one number form per value), which is what makes MFA event ids and
/// state dumps reproducible.
///
/// Two ways to use it: `JSONWriter.encode(value)` for a `Value` tree, or the streaming
/// calls (`beginObject`, `key`, `value`, `endObject`, ...) to emit a document without
/// building a tree first. Commas are placed automatically. Misuse (a value where a key
/// is due, unbalanced containers) is a programming error and is caught by assertions
/// in debug builds.
///
/// Value mapping: `.int`/`.uint` as integers; `.double` in the shortest form that
/// reads back to the same bits, always with a `.` or exponent so it reads back as a
/// double, and non-finite doubles as `null` (JSON has no NaN or infinity);
/// `.bytes` as standard base64 strings; `.duration` as CEL/protobuf strings (`"600s"`,
/// `"1.500s"`); `.timestamp` as RFC 3339 UTC (`"2026-11-23T12:00:00Z"`, fractions in
/// 3, 6 or 9 digits); `.type` as its name; `.object` as an object of its schema's
/// fields in schema order, absent fields left out; map keys that are not strings are
/// written as their decimal or `true`/`false` text.
public struct JSONWriter: Sendable {
    public private(set) var bytes: [UInt8] = []
    /// One entry per open container: true for an object.
    private var containers: [Bool] = []
    /// Set after `key(_:)` until its value is written.
    private var keyPending = false

    public init(reservingCapacity capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    public static func encode(_ value: Value) -> [UInt8] {
        var w = JSONWriter()
        w.value(value)
        return w.bytes
    }

    /// Whether every container has been closed.
    public var isComplete: Bool { containers.isEmpty && !keyPending && !bytes.isEmpty }

    // MARK: streaming

    public mutating func beginObject() {
        separate()
        bytes.append(UInt8(ascii: "{"))
        containers.append(true)
    }

    public mutating func endObject() {
        assert(containers.last == true && !keyPending, "endObject without a matching beginObject, or a key without a value")
        containers.removeLast()
        bytes.append(UInt8(ascii: "}"))
    }

    public mutating func beginArray() {
        separate()
        bytes.append(UInt8(ascii: "["))
        containers.append(false)
    }

    public mutating func endArray() {
        assert(containers.last == false, "endArray without a matching beginArray")
        containers.removeLast()
        bytes.append(UInt8(ascii: "]"))
    }

    public mutating func key(_ name: String) {
        assert(containers.last == true && !keyPending, "a key outside an object, or two keys in a row")
        if bytes.last != UInt8(ascii: "{") { bytes.append(UInt8(ascii: ",")) }
        writeString(name)
        bytes.append(UInt8(ascii: ":"))
        keyPending = true
    }

    public mutating func value(_ s: String) {
        separate()
        writeString(s)
    }

    public mutating func value(_ i: Int64) {
        separate()
        writeInteger(i)
    }

    public mutating func value(_ i: Int) {
        value(Int64(i))
    }

    public mutating func value(_ u: UInt64) {
        separate()
        writeUnsigned(u)
    }

    public mutating func value(_ d: Double) {
        separate()
        writeDouble(d)
    }

    public mutating func value(_ b: Bool) {
        separate()
        appendASCII(b ? "true" : "false")
    }

    public mutating func null() {
        separate()
        appendASCII("null")
    }

    public mutating func value(_ v: Value) {
        switch v {
        case .null: null()
        case .bool(let b): value(b)
        case .int(let i): value(i)
        case .uint(let u): value(u)
        case .double(let d): value(d)
        case .string(let s): value(s)
        case .bytes(let b): value(JSONWriter.base64(b))
        case .duration(let ns): value(JSONWriter.durationString(nanoseconds: ns))
        case .timestamp(let ns): value(JSONWriter.timestampString(nanosecondsSinceEpoch: ns))
        case .type(let name): value(name)
        case .list(let items):
            beginArray()
            for item in items { value(item) }
            endArray()
        case .map(let map):
            beginObject()
            for (k, item) in map.entries {
                key(JSONWriter.keyText(k))
                value(item)
            }
            endObject()
        case .object(let object):
            let schema = object.schema
            beginObject()
            for (i, name) in schema.fieldNames.enumerated() {
                guard let field = object.field(at: i) else { continue }
                key(name)
                value(field)
            }
            endObject()
        }
    }

    /// Appends a fragment that is already valid JSON for one value (e.g. a cached
    /// encoding), with the usual separator.
    public mutating func rawValue(_ json: [UInt8]) {
        separate()
        bytes.append(contentsOf: json)
    }

    /// `key(name)` then `value(v)`: the common case in one call.
    public mutating func field(_ name: String, _ v: String) { key(name); value(v) }
    public mutating func field(_ name: String, _ v: Int64) { key(name); value(v) }
    public mutating func field(_ name: String, _ v: Double) { key(name); value(v) }
    public mutating func field(_ name: String, _ v: Bool) { key(name); value(v) }
    public mutating func field(_ name: String, _ v: Value) { key(name); value(v) }

    // MARK: pieces

    @inline(__always) private mutating func separate() {
        if keyPending {
            keyPending = false
            return
        }
        assert(containers.last != true, "a value inside an object needs a key first")
        assert(!containers.isEmpty || bytes.isEmpty, "a second top-level value")
        if let last = bytes.last, last != UInt8(ascii: "[") { bytes.append(UInt8(ascii: ",")) }
    }

    private mutating func appendASCII(_ s: StaticString) {
        bytes.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    mutating func writeString(_ s: String) {
        bytes.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { utf8 in
            var runStart = 0
            for i in 0..<utf8.count {
                let c = utf8[i]
                // Only what JSON requires is escaped, so non-ASCII text stays readable
                // and the output is as short as the input allows.
                guard c < 0x20 || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") else { continue }
                if runStart < i { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<i])) }
                runStart = i + 1
                bytes.append(UInt8(ascii: "\\"))
                switch c {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(c)
                case 0x0A: bytes.append(UInt8(ascii: "n"))
                case 0x0D: bytes.append(UInt8(ascii: "r"))
                case 0x09: bytes.append(UInt8(ascii: "t"))
                case 0x08: bytes.append(UInt8(ascii: "b"))
                case 0x0C: bytes.append(UInt8(ascii: "f"))
                default:
                    bytes.append(UInt8(ascii: "u"))
                    bytes.append(UInt8(ascii: "0"))
                    bytes.append(UInt8(ascii: "0"))
                    bytes.append(JSONWriter.hexDigits[Int(c >> 4)])
                    bytes.append(JSONWriter.hexDigits[Int(c & 0xF)])
                }
            }
            if runStart < utf8.count { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...])) }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    mutating func writeInteger(_ i: Int64) {
        if i < 0 {
            bytes.append(UInt8(ascii: "-"))
            writeUnsigned(i.magnitude)
        } else {
            writeUnsigned(UInt64(i))
        }
    }

    mutating func writeUnsigned(_ u: UInt64) {
        if u < 10 {
            bytes.append(UInt8(ascii: "0") + UInt8(u))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for 20 digits
        var n = 0
        var v = u
        withUnsafeMutableBytes(of: &digits) { buf in
            while v > 0 {
                buf[23 - n] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
                n += 1
            }
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: buf[(24 - n)...]))
        }
    }

    mutating func writeDouble(_ d: Double) {
        guard d.isFinite else {
            appendASCII("null")
            return
        }
        // Swift's description is the shortest text that reads back to the same bits
        // ("0.1", "1e-05", "-0.0", "1e+300") and always marks a double with `.` or `e`.
        let text = d.description
        bytes.append(contentsOf: text.utf8)
    }

    static func keyText(_ key: Value) -> String {
        switch key {
        case .string(let s): s
        case .int(let i): String(i)
        case .uint(let u): String(u)
        case .bool(let b): b ? "true" : "false"
        case .double(let d): d.description
        default: ""
        }
    }
}
