/// Compact binary encoding for checkpoints: LEB128 varints (zigzag for signed),
/// little-endian fixed-width integers and doubles, length-prefixed strings and bytes,
/// and a tagged encoding of `Value`. The byte layout is part of the checkpoint format:
/// changing it requires bumping the version byte of whatever embeds it.
public struct BinaryWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(reservingCapacity capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    /// Empties it for reuse, keeping the allocation.
    public mutating func removeAll() { bytes.removeAll(keepingCapacity: true) }

    @inline(__always)
    public mutating func writeByte(_ b: UInt8) { bytes.append(b) }

    public mutating func writeBool(_ b: Bool) { bytes.append(b ? 1 : 0) }

    @inline(__always)
    public mutating func writeVarUInt(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Zigzag so that small negative numbers stay short.
    @inline(__always)
    public mutating func writeVarInt(_ value: Int64) {
        writeVarUInt(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    public mutating func writeFixedUInt64(_ value: UInt64) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { bytes.append(contentsOf: $0) }
    }

    public mutating func writeFixedInt64(_ value: Int64) { writeFixedUInt64(UInt64(bitPattern: value)) }

    /// Bit pattern, so NaN payloads and -0.0 survive a round trip.
    public mutating func writeDouble(_ value: Double) { writeFixedUInt64(value.bitPattern) }

    /// Length-prefixed.
    public mutating func writeBytes<C: Collection<UInt8>>(_ b: C) {
        writeVarUInt(UInt64(b.count))
        bytes.append(contentsOf: b)
    }

    /// No length prefix: for callers that frame the data themselves.
    public mutating func writeRaw<C: Collection<UInt8>>(_ b: C) { bytes.append(contentsOf: b) }

    /// Length-prefixed UTF-8.
    public mutating func writeString(_ s: String) {
        var s = s
        s.withUTF8 { writeBytes($0) }
    }

    /// Host objects have no decoder on the other side, so they are written as a map of
    /// their present fields and read back as `.map`.
    public mutating func writeValue(_ value: Value) {
        switch value {
        case .null: writeByte(BinaryValueTag.null)
        case .bool(let b): writeByte(b ? BinaryValueTag.boolTrue : BinaryValueTag.boolFalse)
        case .int(let i): writeByte(BinaryValueTag.int); writeVarInt(i)
        case .uint(let u): writeByte(BinaryValueTag.uint); writeVarUInt(u)
        case .double(let d): writeByte(BinaryValueTag.double); writeDouble(d)
        case .string(let s): writeByte(BinaryValueTag.string); writeString(s)
        case .bytes(let b): writeByte(BinaryValueTag.bytes); writeBytes(b)
        case .list(let l):
            writeByte(BinaryValueTag.list)
            writeVarUInt(UInt64(l.count))
            for e in l { writeValue(e) }
        case .map(let m):
            writeByte(BinaryValueTag.map)
            writeVarUInt(UInt64(m.count))
            for (k, v) in m.entries { writeValue(k); writeValue(v) }
        case .duration(let n): writeByte(BinaryValueTag.duration); writeVarInt(n)
        case .timestamp(let n): writeByte(BinaryValueTag.timestamp); writeVarInt(n)
        case .type(let name): writeByte(BinaryValueTag.type); writeString(name)
        case .object(let o):
            let schema = o.schema
            var present: [(String, Value)] = []
            for i in schema.fieldNames.indices {
                if let v = o.field(at: i) { present.append((schema.fieldNames[i], v)) }
            }
            writeByte(BinaryValueTag.map)
            writeVarUInt(UInt64(present.count))
            for (k, v) in present { writeValue(.string(k)); writeValue(v) }
        }
    }
}

enum BinaryValueTag {
    static let null: UInt8 = 0
    static let boolFalse: UInt8 = 1
    static let boolTrue: UInt8 = 2
    static let int: UInt8 = 3
    static let uint: UInt8 = 4
    static let double: UInt8 = 5
    static let string: UInt8 = 6
    static let bytes: UInt8 = 7
    static let list: UInt8 = 8
    static let map: UInt8 = 9
    static let duration: UInt8 = 10
    static let timestamp: UInt8 = 11
    static let type: UInt8 = 12
}

/// Why a byte sequence could not be decoded, and where.
public struct BinaryDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// The input ended in the middle of an item.
        case truncated
        /// A varint longer than 10 bytes or wider than 64 bits.
        case varintOverflow
        /// A length or count larger than what is left of the input.
        case lengthOutOfRange
        case invalidUTF8
        /// An unknown tag or enum discriminator.
        case invalidTag
        /// Well-formed bytes that describe an impossible value (duplicate map key,
        /// unsorted entries, counter out of range, ...).
        case invalidValue
        case unsupportedVersion
        /// Lists and maps nested deeper than `BinaryReader.maxValueDepth`.
        case nestingTooDeep
        case trailingBytes
    }

    public var code: Code
    public var message: String
    /// Byte offset in the input where the problem was found.
    public var offset: Int

    public init(_ code: Code, _ message: String, offset: Int) {
        self.code = code
        self.message = message
        self.offset = offset
    }

    public var description: String { "binary decoding error (\(code.rawValue)) at byte \(offset): \(message)" }
}

/// Reads what `BinaryWriter` writes. Every read is bounds-checked and throws instead of
/// trapping, so a truncated or corrupted checkpoint is reported, never half-applied by a
/// crash.
public struct BinaryReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int

    /// Deeper nesting is refused so that crafted input cannot exhaust the stack.
    public static let maxValueDepth = 64

    public init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset >= bytes.count }

    public func error(_ code: BinaryDecodingError.Code, _ message: String) -> BinaryDecodingError {
        BinaryDecodingError(code, message, offset: offset)
    }

    public func expectEnd() throws(BinaryDecodingError) {
        if offset != bytes.count { throw error(.trailingBytes, "\(remaining) unexpected bytes after the end") }
    }

    @inline(__always)
    public mutating func readByte() throws(BinaryDecodingError) -> UInt8 {
        guard offset < bytes.count else { throw error(.truncated, "expected a byte") }
        let b = bytes[offset]
        offset += 1
        return b
    }

    public mutating func readBool() throws(BinaryDecodingError) -> Bool {
        switch try readByte() {
        case 0: return false
        case 1: return true
        case let b: offset -= 1; throw error(.invalidValue, "boolean byte \(b)")
        }
    }

    @inline(__always)
    public mutating func readVarUInt() throws(BinaryDecodingError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < bytes.count else { throw error(.truncated, "varint cut short") }
            let b = bytes[offset]
            offset += 1
            if shift == 63 && b > 1 { throw error(.varintOverflow, "varint wider than 64 bits") }
            result |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return result }
            shift += 7
            if shift > 63 { throw error(.varintOverflow, "varint longer than 10 bytes") }
        }
    }

    @inline(__always)
    public mutating func readVarInt() throws(BinaryDecodingError) -> Int64 {
        let u = try readVarUInt()
        return Int64(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
    }

    /// A varint that must fit `0...maximum`, for counts and small enums.
    public mutating func readVarUInt(maximum: UInt64, _ what: @autoclosure () -> String) throws(BinaryDecodingError) -> UInt64 {
        let start = offset
        let v = try readVarUInt()
        if v > maximum {
            offset = start
            throw error(.invalidValue, "\(what()) is \(v), above the maximum \(maximum)")
        }
        return v
    }

    /// A count of items that each take at least `minimumItemSize` bytes, checked against
    /// the input left so that a corrupt count cannot trigger a huge allocation.
    public mutating func readCount(minimumItemSize: Int = 1, _ what: @autoclosure () -> String = "count") throws(BinaryDecodingError) -> Int {
        let start = offset
        let v = try readVarUInt()
        if v > UInt64(remaining / max(minimumItemSize, 1)) {
            offset = start
            throw error(.lengthOutOfRange, "\(what()) \(v) exceeds the \(remaining) bytes left")
        }
        return Int(v)
    }

    public mutating func readFixedUInt64() throws(BinaryDecodingError) -> UInt64 {
        guard remaining >= 8 else { throw error(.truncated, "expected 8 bytes, \(remaining) left") }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(bytes[offset + i]) << (UInt64(i) * 8) }
        offset += 8
        return v
    }

    public mutating func readFixedInt64() throws(BinaryDecodingError) -> Int64 { Int64(bitPattern: try readFixedUInt64()) }

    public mutating func readDouble() throws(BinaryDecodingError) -> Double { Double(bitPattern: try readFixedUInt64()) }

    /// Exactly `count` bytes, no length prefix.
    public mutating func readRaw(count: Int) throws(BinaryDecodingError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else { throw error(.truncated, "expected \(count) bytes, \(remaining) left") }
        let s = bytes[offset..<offset + count]
        offset += count
        return s
    }

    public mutating func readBytes() throws(BinaryDecodingError) -> [UInt8] {
        let n = try readCount(minimumItemSize: 1, "byte length")
        return Array(try readRaw(count: n))
    }

    public mutating func readString() throws(BinaryDecodingError) -> String {
        let start = offset
        let n = try readCount(minimumItemSize: 1, "string length")
        let raw = try readRaw(count: n)
        // Keys are nearly always ASCII, which needs no validation; `String(validating:as:)`
        // looks up generic metadata on every call, which was a quarter of a restore's time.
        let decoded: String? = raw.withUnsafeBufferPointer { buffer in
            var ascii = true
            for b in buffer where b >= 0x80 {
                ascii = false
                break
            }
            return ascii ? String(decoding: buffer, as: UTF8.self) : String(validating: buffer, as: UTF8.self)
        }
        guard let s = decoded else {
            offset = start
            throw error(.invalidUTF8, "string is not valid UTF-8")
        }
        return s
    }

    public mutating func readValue() throws(BinaryDecodingError) -> Value {
        try readValue(depth: 0)
    }

    private mutating func readValue(depth: Int) throws(BinaryDecodingError) -> Value {
        let tagOffset = offset
        let tag = try readByte()
        switch tag {
        case BinaryValueTag.null: return .null
        case BinaryValueTag.boolFalse: return .bool(false)
        case BinaryValueTag.boolTrue: return .bool(true)
        case BinaryValueTag.int: return .int(try readVarInt())
        case BinaryValueTag.uint: return .uint(try readVarUInt())
        case BinaryValueTag.double: return .double(try readDouble())
        case BinaryValueTag.string: return .string(try readString())
        case BinaryValueTag.bytes: return .bytes(try readBytes())
        case BinaryValueTag.duration: return .duration(try readVarInt())
        case BinaryValueTag.timestamp: return .timestamp(try readVarInt())
        case BinaryValueTag.type: return .type(try readString())
        case BinaryValueTag.list, BinaryValueTag.map:
            guard depth < Self.maxValueDepth else {
                offset = tagOffset
                throw error(.nestingTooDeep, "values nested deeper than \(Self.maxValueDepth)")
            }
            if tag == BinaryValueTag.list {
                let n = try readCount(minimumItemSize: 1, "list length")
                var list: [Value] = []
                list.reserveCapacity(n)
                for _ in 0..<n { list.append(try readValue(depth: depth + 1)) }
                return .list(list)
            }
            let n = try readCount(minimumItemSize: 2, "map size")
            var map = ValueMap()
            for _ in 0..<n {
                let keyOffset = offset
                let k = try readValue(depth: depth + 1)
                guard MapKey(k) != nil else {
                    offset = keyOffset
                    throw error(.invalidValue, "map key of a type that cannot be a key")
                }
                guard !map.contains(k) else {
                    offset = keyOffset
                    throw error(.invalidValue, "duplicate map key")
                }
                map[k] = try readValue(depth: depth + 1)
            }
            return .map(map)
        default:
            offset = tagOffset
            throw error(.invalidTag, "unknown value tag \(tag)")
        }
    }
}
