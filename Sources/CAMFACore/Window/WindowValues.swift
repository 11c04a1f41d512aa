/// A value kept by first/last/previous. Scalars are stored as they came (24 bytes, no
/// allocation for short strings); anything else is kept as its binary encoding, which
/// gives the state a total equality without requiring one from `Value`.
enum WindowStoredValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    /// Bit pattern, so that equality is reflexive for NaN.
    case double(UInt64)
    case string(String)
    case duration(Int64)
    case timestamp(Int64)
    case encoded([UInt8])

    init(_ v: Value) {
        switch v {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .uint(let u): self = .uint(u)
        case .double(let d): self = .double(d.bitPattern)
        case .string(let s): self = .string(s)
        case .duration(let n): self = .duration(n)
        case .timestamp(let n): self = .timestamp(n)
        default:
            var w = BinaryWriter()
            w.writeValue(v)
            self = .encoded(w.bytes)
        }
    }

    var value: Value {
        switch self {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .uint(let u): return .uint(u)
        case .double(let bits): return .double(Double(bitPattern: bits))
        case .string(let s): return .string(s)
        case .duration(let n): return .duration(n)
        case .timestamp(let n): return .timestamp(n)
        case .encoded(let bytes):
            // Written by BinaryWriter in this process or validated on load.
            var r = BinaryReader(bytes)
            return (try? r.readValue()) ?? .null
        }
    }

    func write(to w: inout BinaryWriter) {
        // The same tagged encoding as Value, so a checkpoint stays readable by tools
        // that only know the Value format.
        switch self {
        case .encoded(let bytes): w.writeRaw(bytes)
        default: w.writeValue(value)
        }
    }

    init(from r: inout BinaryReader) throws(BinaryDecodingError) {
        self.init(try r.readValue())
    }
}

/// A scalar under CEL equality: numerically equal int, uint and double are one key;
/// all NaNs are one key. Used by distinct count and profile.
enum WindowKey: Hashable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    /// Only above Int64.max; smaller uints fold into `.int`.
    case uintBig(UInt64)
    /// Only for doubles that are not integral within Int64/UInt64 range.
    case double(UInt64)
    /// By bytes (`ExactKey`), as the state's keys: canonically equivalent spellings of a
    /// user id are distinct users to the business system, so they count as two.
    case string(ExactKey)
    case bytes([UInt8])
    case duration(Int64)
    case timestamp(Int64)

    /// nil for lists, maps, objects and types, which the statistics ignore.
    init?(_ v: Value) {
        switch v {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .uint(let u): self = u <= UInt64(Int64.max) ? .int(Int64(u)) : .uintBig(u)
        case .double(let d):
            if d.isNaN {
                self = .double(Double.nan.bitPattern)
            } else if d == d.rounded(.towardZero), d >= -9.223372036854775808e18, d < 9.223372036854775808e18 {
                self = .int(Int64(d))
            } else if d == d.rounded(.towardZero), d >= 9.223372036854775808e18, d < 1.8446744073709551616e19 {
                self = .uintBig(UInt64(d))
            } else {
                self = .double(d.bitPattern)
            }
        case .string(let s): self = .string(ExactKey(s))
        case .bytes(let b): self = .bytes(b)
        case .duration(let n): self = .duration(n)
        case .timestamp(let n): self = .timestamp(n)
        case .list, .map, .type, .object: return nil
        }
    }

    /// Whether the key can be a CEL map key (what a profile reports).
    var isMapKey: Bool {
        switch self {
        case .bool, .int, .uintBig, .string: return true
        default: return false
        }
    }

    var value: Value {
        switch self {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .uintBig(let u): return .uint(u)
        case .double(let bits): return .double(Double(bitPattern: bits))
        case .string(let s): return .string(s.string)
        case .bytes(let b): return .bytes(b)
        case .duration(let n): return .duration(n)
        case .timestamp(let n): return .timestamp(n)
        }
    }

    /// A hash that is the same in every process (Swift's `Hasher` is seeded per run),
    /// because sketch registers derived from it are checkpointed.
    var stableHash: UInt64 {
        var h = WindowHasher()
        switch self {
        case .null: h.combine(tag: 0)
        case .bool(let b): h.combine(tag: 1); h.combine(b ? 1 : 0)
        case .int(let i): h.combine(tag: 2); h.combine(UInt64(bitPattern: i))
        case .uintBig(let u): h.combine(tag: 3); h.combine(u)
        case .double(let bits): h.combine(tag: 4); h.combine(bits)
        case .string(let s):
            h.combine(tag: 5)
            var s = s.string
            s.withUTF8 { h.combine(bytes: $0) }
        case .bytes(let b): h.combine(tag: 6); b.withUnsafeBufferPointer { h.combine(bytes: $0) }
        case .duration(let n): h.combine(tag: 7); h.combine(UInt64(bitPattern: n))
        case .timestamp(let n): h.combine(tag: 8); h.combine(UInt64(bitPattern: n))
        }
        return h.finalize()
    }

    func write(to w: inout BinaryWriter) {
        switch self {
        case .null: w.writeByte(0)
        case .bool(let b): w.writeByte(b ? 2 : 1)
        case .int(let i): w.writeByte(3); w.writeVarInt(i)
        case .uintBig(let u): w.writeByte(4); w.writeVarUInt(u)
        case .double(let bits): w.writeByte(5); w.writeFixedUInt64(bits)
        case .string(let s): w.writeByte(6); w.writeString(s.string)
        case .bytes(let b): w.writeByte(7); w.writeBytes(b)
        case .duration(let n): w.writeByte(8); w.writeVarInt(n)
        case .timestamp(let n): w.writeByte(9); w.writeVarInt(n)
        }
    }

    init(from r: inout BinaryReader) throws(BinaryDecodingError) {
        let start = r.offset
        let tag = try r.readByte()
        switch tag {
        case 0: self = .null
        case 1: self = .bool(false)
        case 2: self = .bool(true)
        case 3: self = .int(try r.readVarInt())
        case 4:
            let u = try r.readVarUInt()
            guard u > UInt64(Int64.max) else { throw BinaryDecodingError(.invalidValue, "small uint key not folded into int", offset: start) }
            self = .uintBig(u)
        case 5:
            let bits = try r.readFixedUInt64()
            // Keys are canonical; anything else would make equal values unequal.
            guard WindowKey(.double(Double(bitPattern: bits))) == .double(bits) else {
                throw BinaryDecodingError(.invalidValue, "double key not in canonical form", offset: start)
            }
            self = .double(bits)
        case 6: self = .string(ExactKey(try r.readString()))
        case 7: self = .bytes(try r.readBytes())
        case 8: self = .duration(try r.readVarInt())
        case 9: self = .timestamp(try r.readVarInt())
        default: throw BinaryDecodingError(.invalidTag, "unknown key tag \(tag)", offset: start)
        }
    }
}

/// 64-bit multiply-xorshift hashing with a murmur3 finalizer: fast, stable across
/// processes and platforms, well mixed enough for HyperLogLog ranks.
struct WindowHasher {
    private var h: UInt64 = 0x243F_6A88_85A3_08D3
    private var length: UInt64 = 0

    @inline(__always) mutating func combine(_ x: UInt64) {
        h = (h ^ x) &* 0x9E37_79B9_7F4A_7C15
        h = (h << 31) | (h >> 33)
        length &+= 8
    }

    mutating func combine(tag: UInt8) { combine(UInt64(tag)) }

    mutating func combine(bytes: UnsafeBufferPointer<UInt8>) {
        var i = 0
        let n = bytes.count
        while i + 8 <= n {
            var chunk: UInt64 = 0
            for j in 0..<8 { chunk |= UInt64(bytes[i + j]) << (UInt64(j) * 8) }
            combine(chunk)
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < n {
            tail |= UInt64(bytes[i]) << shift
            shift += 8
            i += 1
        }
        // The byte count goes in too, so "a" and "a\0" differ.
        combine(tail ^ (UInt64(n) << 56))
    }

    func finalize() -> UInt64 {
        var k = h ^ length
        k ^= k >> 33
        k = k &* 0xFF51_AFD7_ED55_8CCD
        k ^= k >> 33
        k = k &* 0xC4CE_B9FE_1A85_EC53
        k ^= k >> 33
        return k
    }
}
