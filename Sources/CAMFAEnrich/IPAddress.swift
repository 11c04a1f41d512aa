#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP address held as 128 bits. IPv4 addresses live in the IPv4-mapped range
/// (::ffff:a.b.c.d) so that one table answers for both families and an IPv4 client seen
/// through a dual-stack socket ("::ffff:10.1.2.3") is the same address as "10.1.2.3".
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public init(ipv4 value: UInt32) {
        high = 0
        low = 0x0000_FFFF_0000_0000 | UInt64(value)
    }

    /// True for IPv4 addresses, whether written as IPv4 or as IPv4-mapped IPv6.
    public var isIPv4: Bool { high == 0 && (low >> 32) == 0x0000_FFFF }

    public var ipv4Value: UInt32? { isIPv4 ? UInt32(truncatingIfNeeded: low) : nil }

    /// Parses an IPv4 dotted quad or any RFC 4291 IPv6 text form; nil otherwise.
    /// inet_pton is strict (no leading zeros tricks, no zone ids), which is what a
    /// security filter wants.
    public init?(_ text: String) {
        var text = text
        let parsed: IPAddress? = text.withUTF8 { utf8 -> IPAddress? in
            guard !utf8.isEmpty, utf8.count < 64 else { return nil }
            var buffer = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            return withUnsafeMutableBytes(of: &buffer) { raw -> IPAddress? in
                let cString = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
                var isV6 = false
                for (i, byte) in utf8.enumerated() {
                    if byte == UInt8(ascii: ":") { isV6 = true }
                    cString[i] = CChar(bitPattern: byte)
                }
                cString[utf8.count] = 0
                if isV6 {
                    var address = in6_addr()
                    guard inet_pton(AF_INET6, cString, &address) == 1 else { return nil }
                    return withUnsafeBytes(of: &address) { IPAddress(bytes: $0) }
                } else {
                    var address = in_addr()
                    guard inet_pton(AF_INET, cString, &address) == 1 else { return nil }
                    return IPAddress(ipv4: UInt32(bigEndian: address.s_addr))
                }
            }
        }
        guard let parsed else { return nil }
        self = parsed
    }

    /// From 16 network-order bytes.
    init(bytes: UnsafeRawBufferPointer) {
        var h: UInt64 = 0
        var l: UInt64 = 0
        for i in 0..<8 { h = h << 8 | UInt64(bytes[i]) }
        for i in 8..<16 { l = l << 8 | UInt64(bytes[i]) }
        high = h
        low = l
    }

    /// The address with every bit after the first `length` cleared.
    public func masked(to length: Int) -> IPAddress {
        if length <= 0 { return IPAddress(high: 0, low: 0) }
        if length >= 128 { return self }
        if length <= 64 {
            let mask: UInt64 = length == 64 ? ~0 : ~(~UInt64(0) >> UInt64(length))
            return IPAddress(high: high & mask, low: 0)
        }
        let mask = ~(~UInt64(0) >> UInt64(length - 64))
        return IPAddress(high: high, low: low & mask)
    }

    /// The last address of the network of this address with the given prefix length.
    public func lastAddress(prefixLength length: Int) -> IPAddress {
        if length >= 128 { return self }
        if length <= 0 { return IPAddress(high: ~0, low: ~0) }
        if length <= 64 {
            let hostBits: UInt64 = length == 64 ? 0 : ~UInt64(0) >> UInt64(length)
            return IPAddress(high: high | hostBits, low: ~0)
        }
        return IPAddress(high: high, low: low | (~UInt64(0) >> UInt64(length - 64)))
    }

    public var description: String {
        if let v4 = ipv4Value {
            return "\(v4 >> 24).\((v4 >> 16) & 0xff).\((v4 >> 8) & 0xff).\(v4 & 0xff)"
        }
        var address = in6_addr()
        withUnsafeMutableBytes(of: &address) { raw in
            for i in 0..<8 { raw[i] = UInt8(truncatingIfNeeded: high >> UInt64(56 - 8 * i)) }
            for i in 0..<8 { raw[8 + i] = UInt8(truncatingIfNeeded: low >> UInt64(56 - 8 * i)) }
        }
        var out = [CChar](repeating: 0, count: 64)
        _ = inet_ntop(AF_INET6, &address, &out, socklen_t(out.count))
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A network: an address and a prefix length, both in the 128-bit space (an IPv4 /24
/// is held as a /120 inside ::ffff:0:0/96).
public struct IPNetwork: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var prefixLength: Int
    /// Whether the text was IPv4, so the network prints the way it was written.
    public var isIPv4: Bool

    /// Parses "a.b.c.d/n" (n ≤ 32) or "v6/n" (n ≤ 128). A bare address is a host
    /// route (/32 or /128). Host bits set below the prefix are rejected, because
    /// "10.1.2.3/8" is almost always a typo for something narrower.
    public init?(cidr text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let first = parts.first, let address = IPAddress(String(first)) else { return nil }
        let writtenAsV4 = !first.contains(":")
        let maxLength = writtenAsV4 ? 32 : 128
        var length = maxLength
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let n = Int(digits), n <= maxLength else { return nil }
            length = n
        }
        let fullLength = writtenAsV4 ? length + 96 : length
        guard address.masked(to: fullLength) == address else { return nil }
        self.address = address
        self.prefixLength = fullLength
        self.isIPv4 = writtenAsV4
    }

    public func contains(_ other: IPAddress) -> Bool {
        other.masked(to: prefixLength) == address
    }

    public var description: String {
        isIPv4 ? "\(address)/\(prefixLength - 96)" : "\(address)/\(prefixLength)"
    }
}
