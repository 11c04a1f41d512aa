/// xoshiro256** seeded through SplitMix64. The simulator promises byte-identical output
/// for a seed on every machine and Swift version, so it never hands this generator to
/// stdlib helpers (`Int.random(in:using:)`, `shuffled(using:)`, ...): their algorithms
/// are not part of any stability contract. Everything below is integer arithmetic or
/// exactly rounded IEEE operations.
struct Xoshiro256: Sendable {
    private var s0, s1, s2, s3: UInt64

    init(seed: UInt64) {
        var sm = SplitMix64(state: seed)
        s0 = sm.next()
        s1 = sm.next()
        s2 = sm.next()
        s3 = sm.next()
    }

    init(state: (UInt64, UInt64, UInt64, UInt64)) {
        (s0, s1, s2, s3) = state
    }

    mutating func next() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    /// Uniform in 0..<n (Lemire's multiply-and-reject, so no modulo bias).
    mutating func below(_ n: Int) -> Int {
        precondition(n > 0)
        let bound = UInt64(n)
        var m = next().multipliedFullWidth(by: bound)
        if m.low < bound {
            let threshold = (0 &- bound) % bound
            while m.low < threshold { m = next().multipliedFullWidth(by: bound) }
        }
        return Int(m.high)
    }

    /// Uniform in the closed range.
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + below(range.upperBound - range.lowerBound + 1)
    }

    /// Uniform in [0, 1) with 53 random bits.
    mutating func unit() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    mutating func chance(_ p: Double) -> Bool { unit() < p }

    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}

struct SplitMix64: Sendable {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Identifiers that must never repeat within a run (device and session ids) come from a
/// counter pushed through a keyed bijection of 48-bit values: distinct counters give
/// distinct ids, yet they look random and differ between seeds. 48 bits keep the
/// formatted id at 14 bytes, inside Swift's small-string storage (no allocation).
struct IdentifierMixer: Sendable {
    private static let mask: UInt64 = (1 << 48) - 1
    let key: UInt64

    func mix(_ counter: UInt64) -> UInt64 {
        // Each step is invertible modulo 2^48: xor with a constant, multiplication by an
        // odd number, and xor with a right shift of itself.
        var z = (counter ^ key) & Self.mask
        z = (z &* 0x9E37_79B9_7F4B) & Self.mask
        z ^= z >> 23
        z = (z &* 0xC2B2_AE3D_27D5) & Self.mask
        z ^= z >> 29
        return z
    }
}
