/// A 64-bit checksum stored with every row.
///
/// SQLite detects damage to its B-tree structure (SQLITE_CORRUPT), but not a flipped bit inside
/// a row's payload: that would load as a plausible but wrong counter. Every entry, user and
/// checkpoint header therefore carries this checksum of its fields, and `load` verifies it, so
/// a damaged checkpoint is reported as `.corrupt` instead of being restored.
///
/// Not cryptographic, only meant to catch accidental damage. Words are read little-endian so a
/// database file checks out the same on any host.
struct Checksum {
    private var state: UInt64 = 0x9E37_79B9_7F4A_7C15

    /// Adds a length-prefixed field, so ("ab", "c") and ("a", "bc") differ.
    @inline(__always)
    mutating func add(_ bytes: UnsafeBufferPointer<UInt8>) {
        mix(UInt64(bytes.count))
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        let raw = UnsafeRawPointer(base)
        var i = 0
        while i + 8 <= bytes.count {
            mix(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
            i += 8
        }
        if i < bytes.count {
            var tail: UInt64 = 0
            var shift: UInt64 = 0
            while i < bytes.count {
                tail |= UInt64(bytes[i]) << shift
                shift += 8
                i += 1
            }
            mix(tail)
        }
    }

    @inline(__always)
    mutating func add(_ value: Int64) { mix(UInt64(bitPattern: value)) }

    @inline(__always)
    private mutating func mix(_ word: UInt64) {
        state = (state ^ word) &* 0xFF51_AFD7_ED55_8CCD
        state ^= state >> 32
    }

    var value: Int64 {
        var z = state
        z ^= z >> 33
        z = z &* 0xC4CE_B9FE_1A85_EC53
        z ^= z >> 33
        return Int64(bitPattern: z)
    }

    // Fixed arities rather than variadics: a variadic call allocates an array, once per row.
    @inline(__always)
    static func of(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Int64 {
        var sum = Checksum()
        sum.add(a)
        sum.add(b)
        return sum.value
    }

    @inline(__always)
    static func of(
        _ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>, _ c: UnsafeBufferPointer<UInt8>
    ) -> Int64 {
        var sum = Checksum()
        sum.add(a)
        sum.add(b)
        sum.add(c)
        return sum.value
    }
}
