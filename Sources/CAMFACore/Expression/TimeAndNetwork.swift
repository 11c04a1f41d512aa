import Foundation

// Duration and timestamp text forms, and CIDR matching for `inCidr`. Hand-written so
// that the core stays free of locale, calendar and time-zone databases.

private let nanosPerSecond: Int64 = 1_000_000_000

/// Parses CEL duration text: an optional sign, then one or more decimal numbers each
/// with a unit (h, m, s, ms, us, ns), e.g. "1h30m", "-1.5s", "0".
func parseDuration(_ text: String) -> Result<Int64, EvalError> {
    var s = Substring(text)
    var negative = false
    if s.hasPrefix("-") { negative = true; s = s.dropFirst() } else if s.hasPrefix("+") { s = s.dropFirst() }
    if s == "0" { return .success(0) }
    if s.isEmpty { return .failure(EvalError("invalid duration '\(text)'")) }
    var total: Int64 = 0
    while !s.isEmpty {
        let intPart = s.prefix(while: { $0.isASCII && $0.isNumber })
        s = s.dropFirst(intPart.count)
        var frac: Substring = ""
        if s.hasPrefix(".") {
            s = s.dropFirst()
            frac = s.prefix(while: { $0.isASCII && $0.isNumber })
            s = s.dropFirst(frac.count)
        }
        if intPart.isEmpty && frac.isEmpty { return .failure(EvalError("invalid duration '\(text)'")) }
        let unit: Int64
        if s.hasPrefix("ns") { unit = 1; s = s.dropFirst(2) }
        else if s.hasPrefix("us") { unit = 1_000; s = s.dropFirst(2) }
        else if s.hasPrefix("µs") { unit = 1_000; s = s.dropFirst(2) }
        else if s.hasPrefix("ms") { unit = 1_000_000; s = s.dropFirst(2) }
        else if s.hasPrefix("s") { unit = nanosPerSecond; s = s.dropFirst() }
        else if s.hasPrefix("m") { unit = 60 * nanosPerSecond; s = s.dropFirst() }
        else if s.hasPrefix("h") { unit = 3600 * nanosPerSecond; s = s.dropFirst() }
        else { return .failure(EvalError("invalid duration '\(text)': missing unit")) }
        guard let whole = Int64(intPart.isEmpty ? "0" : intPart) else {
            return .failure(EvalError("duration '\(text)' out of range"))
        }
        let (scaled, o1) = whole.multipliedReportingOverflow(by: unit)
        if o1 { return .failure(EvalError("duration '\(text)' out of range")) }
        var part = scaled
        if !frac.isEmpty {
            // Fractions finer than a nanosecond are truncated.
            var f: Int64 = 0, scale: Int64 = 1
            for ch in frac.prefix(18) {
                f = f * 10 + Int64(ch.asciiValue! - 48)
                scale *= 10
            }
            // Exact f/scale × unit in 128 bits: doubles would turn 2.3h into 2.29999…h.
            let q = scale.dividingFullWidth(f.multipliedFullWidth(by: unit)).quotient
            // "9223372036.9s": the whole seconds fit, the fraction on top does not.
            let (withFraction, o) = part.addingReportingOverflow(q)
            if o { return .failure(EvalError("duration '\(text)' out of range")) }
            part = withFraction
        }
        let (sum, o2) = total.addingReportingOverflow(part)
        if o2 { return .failure(EvalError("duration '\(text)' out of range")) }
        total = sum
    }
    return .success(negative ? -total : total)
}

/// CEL's `string(duration)`: seconds with only the fractional digits needed.
func formatDuration(_ ns: Int64) -> String {
    let neg = ns < 0
    let mag = ns.magnitude
    let secs = mag / UInt64(nanosPerSecond)
    var frac = mag % UInt64(nanosPerSecond)
    var out = (neg ? "-" : "") + String(secs)
    if frac != 0 {
        var digits = 9
        while frac % 10 == 0 { frac /= 10; digits -= 1 }
        out += "." + String(frac).leftPadded(digits)
    }
    return out + "s"
}

// Days from 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
    let y = m <= 2 ? y0 - 1 : y0
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146097 + doe - 719468
}

func civilFromDays(_ z0: Int64) -> (year: Int64, month: Int64, day: Int64) {
    let z = z0 + 719468
    let era = (z >= 0 ? z : z - 146096) / 146097
    let doe = z - era * 146097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
}

/// Parses RFC 3339 (`2009-02-13T23:31:30.5Z`, `...+01:00`) to Unix nanoseconds.
func parseTimestamp(_ text: String) -> Result<Int64, EvalError> {
    let b = Array(text.utf8)
    let bad = EvalError("invalid timestamp '\(text)'")
    func num(_ from: Int, _ n: Int) -> Int64? {
        guard from + n <= b.count else { return nil }
        var v: Int64 = 0
        for i in from..<(from + n) {
            guard b[i] >= 48 && b[i] <= 57 else { return nil }
            v = v * 10 + Int64(b[i] - 48)
        }
        return v
    }
    func at(_ i: Int, _ c: UInt8) -> Bool { i < b.count && b[i] == c }
    guard b.count >= 20, let year = num(0, 4), at(4, 45), let month = num(5, 2), at(7, 45), let day = num(8, 2),
        at(10, 84) || at(10, 116), let hour = num(11, 2), at(13, 58), let minute = num(14, 2), at(16, 58),
        let second = num(17, 2)
    else { return .failure(bad) }
    guard (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else {
        return .failure(bad)
    }
    var i = 19
    var nanos: Int64 = 0
    if at(i, 46) {
        i += 1
        var digits = 0
        while i < b.count, b[i] >= 48, b[i] <= 57 {
            if digits < 9 { nanos = nanos * 10 + Int64(b[i] - 48) }
            digits += 1
            i += 1
        }
        if digits == 0 { return .failure(bad) }
        for _ in min(digits, 9)..<9 { nanos *= 10 }
    }
    var offset: Int64 = 0
    if at(i, 90) || at(i, 122) {
        i += 1
    } else if at(i, 43) || at(i, 45) {
        guard let oh = num(i + 1, 2), at(i + 3, 58), let om = num(i + 4, 2) else { return .failure(bad) }
        offset = (oh * 60 + om) * 60 * (b[i] == 45 ? -1 : 1)
        i += 6
    } else {
        return .failure(bad)
    }
    guard i == b.count else { return .failure(bad) }
    let seconds = daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset
    return timestampFromSeconds(seconds, nanos: nanos)
}

/// CEL timestamps span years 1 to 9999; camfa stores Int64 nanoseconds, which covers
/// 1677-09-21 to 2262-04-11, so anything outside that is a range error.
func timestampFromSeconds(_ seconds: Int64, nanos: Int64) -> Result<Int64, EvalError> {
    let (a, o1) = seconds.multipliedReportingOverflow(by: nanosPerSecond)
    let (t, o2) = a.addingReportingOverflow(nanos)
    if o1 || o2 { return .failure(EvalError("timestamp out of range")) }
    return .success(t)
}

func formatTimestamp(_ ns: Int64) -> String {
    var secs = ns / nanosPerSecond
    var frac = ns % nanosPerSecond
    if frac < 0 { frac += nanosPerSecond; secs -= 1 }
    let parts = timeParts(secs)
    var out = String(parts.year).leftPadded(4) + "-" + String(parts.month).leftPadded(2) + "-"
        + String(parts.day).leftPadded(2) + "T" + String(parts.hour).leftPadded(2) + ":"
        + String(parts.minute).leftPadded(2) + ":" + String(parts.second).leftPadded(2)
    if frac != 0 {
        var digits = 9
        while frac % 10 == 0 { frac /= 10; digits -= 1 }
        out += "." + String(frac).leftPadded(digits)
    }
    return out + "Z"
}

struct TimeParts {
    var year, month, day, hour, minute, second, dayOfWeek, dayOfYear: Int64
}

/// Calendar fields of a Unix time in seconds, already shifted to the wanted offset.
func timeParts(_ secs: Int64) -> TimeParts {
    var days = secs / 86400
    var rem = secs % 86400
    if rem < 0 { rem += 86400; days -= 1 }
    let (y, m, d) = civilFromDays(days)
    let dow = ((days % 7) + 7 + 4) % 7  // 1970-01-01 was a Thursday
    let doy = days - daysFromCivil(y, 1, 1)
    return TimeParts(
        year: y, month: m, day: d, hour: rem / 3600, minute: (rem / 60) % 60, second: rem % 60,
        dayOfWeek: dow, dayOfYear: doy)
}

/// Fixed UTC offsets ("+05:30", "-02:00", "UTC", "Z") in seconds; named zones other
/// than UTC would need a time-zone database, which the pure core does not read.
func parseZoneOffset(_ z: String) -> Int64? {
    if z == "UTC" || z == "Z" || z == "Etc/UTC" || z == "GMT" { return 0 }
    var s = Substring(z)
    var sign: Int64 = 1
    if s.hasPrefix("+") { s = s.dropFirst() } else if s.hasPrefix("-") { sign = -1; s = s.dropFirst() }
    let parts = s.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count == 2, parts[0].count == 2, parts[1].count == 2,
        let h = Int64(parts[0]), let m = Int64(parts[1]), h < 24, m < 60
    else { return nil }
    return sign * (h * 3600 + m * 60)
}

// MARK: - IP networks

/// An IPv4 or IPv6 network; IPv4 addresses live in the IPv4-mapped IPv6 range so that
/// one 128-bit comparison serves both families.
struct CIDR: Sendable, Hashable {
    var high: UInt64
    var low: UInt64
    var prefix: Int  // over 128 bits
    var isV4: Bool

    init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let (h, l, v4) = parseIP(parts[0]), let bits = Int(parts[1]),
            !parts[1].hasPrefix("+"), !parts[1].hasPrefix("-")
        else { return nil }
        guard bits >= 0, bits <= (v4 ? 32 : 128) else { return nil }
        prefix = v4 ? bits + 96 : bits
        isV4 = v4
        let (mh, ml) = CIDR.mask(prefix)
        high = h & mh
        low = l & ml
    }

    static func mask(_ prefix: Int) -> (UInt64, UInt64) {
        let mh: UInt64 = prefix >= 64 ? .max : (prefix == 0 ? 0 : ~0 << UInt64(64 - prefix))
        let ml: UInt64 = prefix <= 64 ? 0 : (prefix >= 128 ? .max : ~0 << UInt64(128 - prefix))
        return (mh, ml)
    }

    func contains(_ ip: Substring) -> Bool {
        guard let (h, l, v4) = parseIP(ip), v4 == isV4 else { return false }
        let (mh, ml) = CIDR.mask(prefix)
        return h & mh == high && l & ml == low
    }
}

extension CIDR {
    /// `ipPrefix(ip, v4Bits, v6Bits)`: the network the address is in, as CIDR text
    /// ("203.0.113.0/24"; IPv6 as eight hex groups, "2001:db8:0:0:0:0:0:0/48"), so that
    /// one network is one string whatever the address's spelling.
    static func network(of ip: Substring, v4Bits: Int64, v6Bits: Int64) -> String? {
        guard let (h, l, v4) = parseIP(ip) else { return nil }
        let bits = v4 ? v4Bits : v6Bits
        guard bits >= 0, bits <= (v4 ? 32 : 128) else { return nil }
        let (mh, ml) = mask(v4 ? Int(bits) + 96 : Int(bits))
        let nh = h & mh, nl = l & ml
        if v4 {
            let a = UInt32(truncatingIfNeeded: nl)
            return "\(a >> 24).\(a >> 16 & 255).\(a >> 8 & 255).\(a & 255)/\(bits)"
        }
        var groups: [String] = []
        for half in [nh, nl] {
            for i in 0..<4 {
                let shift = UInt64(48 - 16 * i)
                groups.append(String((half >> shift) & 0xFFFF, radix: 16))
            }
        }
        return groups.joined(separator: ":") + "/\(bits)"
    }
}

/// Returns the address as two 64-bit halves of its IPv6 form.
func parseIP(_ s: Substring) -> (UInt64, UInt64, Bool)? {
    if let v4 = parseIPv4(s) { return (0, 0xFFFF_0000_0000 | UInt64(v4), true) }
    guard s.utf8.contains(58), let words = parseIPv6(s) else { return nil }
    var h: UInt64 = 0, l: UInt64 = 0
    for i in 0..<4 { h = h << 16 | UInt64(words[i]) }
    for i in 4..<8 { l = l << 16 | UInt64(words[i]) }
    return (h, l, false)
}

/// Dotted quad without leading zeros; byte-wise, since it runs per event.
private func parseIPv4(_ s: Substring) -> UInt32? {
    var v: UInt32 = 0, part: UInt32 = 0, digits = 0, dots = 0, leadingZero = false
    for c in s.utf8 {
        if c == 46 {  // "."
            guard digits > 0 else { return nil }
            v = v << 8 | part
            part = 0; digits = 0; dots += 1
            if dots > 3 { return nil }
        } else if c >= 48 && c <= 57 {
            if digits == 0 { leadingZero = c == 48 } else if leadingZero { return nil }
            part = part * 10 + UInt32(c - 48)
            digits += 1
            if part > 255 { return nil }
        } else {
            return nil
        }
    }
    guard dots == 3, digits > 0 else { return nil }
    return v << 8 | part
}

private func parseIPv6(_ s: Substring) -> [UInt16]? {
    if s.isEmpty || s.contains("%") { return nil }
    let halves = s.components(separatedBy: "::")
    guard halves.count <= 2 else { return nil }
    func groups(_ part: String, allowV4Tail: Bool) -> [UInt16]? {
        if part.isEmpty { return [] }
        var out: [UInt16] = []
        let items = part.split(separator: ":", omittingEmptySubsequences: false)
        for (i, g) in items.enumerated() {
            if allowV4Tail && i == items.count - 1 && g.contains(".") {
                guard let v4 = parseIPv4(g) else { return nil }
                out.append(UInt16(v4 >> 16))
                out.append(UInt16(v4 & 0xFFFF))
            } else {
                guard (1...4).contains(g.count), let n = UInt16(g, radix: 16) else { return nil }
                out.append(n)
            }
        }
        return out
    }
    if halves.count == 1 {
        guard let g = groups(halves[0], allowV4Tail: true), g.count == 8 else { return nil }
        return g
    }
    guard let a = groups(halves[0], allowV4Tail: false), let b = groups(halves[1], allowV4Tail: true),
        a.count + b.count <= 7
    else { return nil }
    return a + Array(repeating: 0, count: 8 - a.count - b.count) + b
}
