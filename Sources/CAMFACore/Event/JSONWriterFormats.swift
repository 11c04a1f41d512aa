/// Text forms for the CEL values JSON has no type for, matching the protobuf JSON
/// mapping that CEL's `string()` conversions also follow.
extension JSONWriter {
    /// `"600s"`, `"-1.500s"`, `"0.000000001s"`: seconds with 0, 3, 6 or 9 fraction digits.
    public static func durationString(nanoseconds: Int64) -> String {
        let magnitude = nanoseconds.magnitude
        var s = nanoseconds < 0 ? "-" : ""
        s += String(magnitude / 1_000_000_000)
        s += fraction(UInt32(magnitude % 1_000_000_000))
        s += "s"
        return s
    }

    /// RFC 3339 in UTC with a `Z`, e.g. `"2026-11-23T12:00:00.250Z"`.
    public static func timestampString(nanosecondsSinceEpoch ns: Int64) -> String {
        // Floor division, so instants before 1970 still get a positive fraction.
        var seconds = ns / 1_000_000_000
        var nanos = ns % 1_000_000_000
        if nanos < 0 {
            nanos += 1_000_000_000
            seconds -= 1
        }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        var s = year < 0 ? "-" : ""
        s += pad(year.magnitude, 4) + "-" + pad(UInt64(month), 2) + "-" + pad(UInt64(day), 2)
        s += "T" + pad(UInt64(secondOfDay / 3600), 2) + ":" + pad(UInt64(secondOfDay / 60 % 60), 2)
        s += ":" + pad(UInt64(secondOfDay % 60), 2)
        s += fraction(UInt32(nanos))
        s += "Z"
        return s
    }

    /// Proleptic Gregorian date of a day count from 1970-01-01 (Hinnant's algorithm:
    /// shift to eras of 400 years that start on March 1st, where leap days fall last).
    static func civilDate(daysSinceEpoch: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = daysSinceEpoch + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    private static func pad(_ v: UInt64, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    private static func fraction(_ nanos: UInt32) -> String {
        if nanos == 0 { return "" }
        if nanos % 1_000_000 == 0 { return "." + pad(UInt64(nanos / 1_000_000), 3) }
        if nanos % 1_000 == 0 { return "." + pad(UInt64(nanos / 1_000), 6) }
        return "." + pad(UInt64(nanos), 9)
    }

    private static let base64Alphabet: [UInt8] = Array(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Standard base64 with padding (RFC 4648 §4), as protobuf's JSON mapping writes bytes.
    public static func base64(_ data: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((data.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= data.count {
            let n = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2])
            out.append(base64Alphabet[Int(n >> 18 & 63)])
            out.append(base64Alphabet[Int(n >> 12 & 63)])
            out.append(base64Alphabet[Int(n >> 6 & 63)])
            out.append(base64Alphabet[Int(n & 63)])
            i += 3
        }
        let rest = data.count - i
        if rest > 0 {
            let n = UInt32(data[i]) << 16 | (rest == 2 ? UInt32(data[i + 1]) << 8 : 0)
            out.append(base64Alphabet[Int(n >> 18 & 63)])
            out.append(base64Alphabet[Int(n >> 12 & 63)])
            out.append(rest == 2 ? base64Alphabet[Int(n >> 6 & 63)] : UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }
}
