import CLibCrypto

/// HOTP (RFC 4226) and TOTP (RFC 6238) with the parameters every authenticator app
/// shares: HMAC-SHA-1, 6 digits, 30-second steps from the Unix epoch.
public struct TOTP: Sendable, Equatable {
    public var secret: [UInt8]
    public var digits: Int
    public var period: Int64

    public init(secret: [UInt8], digits: Int = 6, period: Int64 = 30) {
        self.secret = secret
        self.digits = digits
        self.period = period
    }

    /// A new random secret of 20 bytes (RFC 4226's recommended 160 bits), from OpenSSL's
    /// CSPRNG; nil if it cannot be seeded.
    /// A one-time code of `digits` decimal digits for email and SMS (uniform: 64 random
    /// bits reduced modulo 10^digits, a bias below 10^-12).
    public static func newCode(digits: Int = 6) -> String? {
        var bytes = [UInt8](repeating: 0, count: 8)
        guard RAND_bytes(&bytes, 8) == 1 else { return nil }
        var modulus: UInt64 = 1
        for _ in 0..<digits { modulus *= 10 }
        let n = bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) } % modulus
        let text = String(n)
        return String(repeating: "0", count: digits - text.count) + text
    }

    public static func newSecret() -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: 20)
        return RAND_bytes(&bytes, Int32(bytes.count)) == 1 ? bytes : nil
    }

    /// The step a time (Unix seconds) falls in.
    public func step(at seconds: Int64) -> Int64 { seconds >= 0 ? seconds / period : (seconds - period + 1) / period }

    public func code(at seconds: Int64) -> String { Self.hotp(secret: secret, counter: UInt64(bitPattern: step(at: seconds)), digits: digits) }

    /// RFC 4226 section 5.3: HMAC-SHA-1 of the big-endian counter, dynamically truncated.
    public static func hotp(secret: [UInt8], counter: UInt64, digits: Int) -> String {
        let message = (0..<8).map { UInt8(truncatingIfNeeded: counter >> (56 - 8 * UInt64($0))) }
        var mac = [UInt8](repeating: 0, count: 20)
        var length: UInt32 = 0
        _ = secret.withUnsafeBufferPointer { key in
            HMAC(EVP_sha1(), key.baseAddress, Int32(key.count), message, message.count, &mac, &length)
        }
        let offset = Int(mac[19] & 0x0F)
        let binary = UInt32(mac[offset] & 0x7F) << 24 | UInt32(mac[offset + 1]) << 16 | UInt32(mac[offset + 2]) << 8 | UInt32(mac[offset + 3])
        var modulus: UInt32 = 1
        for _ in 0..<digits { modulus *= 10 }
        let value = String(binary % modulus)
        return String(repeating: "0", count: max(0, digits - value.count)) + value
    }

    /// `otpauth://totp/…` (Google Authenticator's key URI format) for enrolment QR codes.
    public func uri(issuer: String, account: String) -> String {
        // RFC 3986 unreserved characters pass, every other byte is percent-encoded.
        func escape(_ s: String) -> String {
            var out = ""
            for b in s.utf8 {
                switch b {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                     UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                    out.unicodeScalars.append(UnicodeScalar(b))
                default:
                    let hex = String(b, radix: 16, uppercase: true)
                    out += "%" + (hex.count == 1 ? "0" + hex : hex)
                }
            }
            return out
        }
        return "otpauth://totp/\(escape(issuer)):\(escape(account))?secret=\(Base32.encode(secret))&issuer=\(escape(issuer))"
            + "&algorithm=SHA1&digits=\(digits)&period=\(period)"
    }
}

/// Checks TOTP codes for one factor: ±`skew` steps of clock drift, each step usable once
/// (RFC 6238 section 5.2: a code replayed within its window is refused).
public struct TOTPVerifier: Sendable, Equatable {
    public enum Outcome: Sendable, Equatable {
        /// The step the code matched: stored as the factor's last used step.
        case accepted(step: Int64)
        case wrongCode
        /// The code matches a step already used (or older than one used).
        case replayed
    }

    public var totp: TOTP
    public var skew: Int64

    public init(totp: TOTP, skew: Int64 = 1) {
        self.totp = totp
        self.skew = skew
    }

    /// `lastUsedStep`: the step of the last accepted code, nil when none was.
    public func verify(_ code: String, at seconds: Int64, lastUsedStep: Int64?) -> Outcome {
        guard code.utf8.count == totp.digits, code.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return .wrongCode
        }
        let now = totp.step(at: seconds)
        var replayed = false
        // Every candidate is computed, so the time taken does not tell which one matched.
        var matched: Int64?
        for step in (now - skew)...(now + skew) {
            let candidate = TOTP.hotp(secret: totp.secret, counter: UInt64(bitPattern: step), digits: totp.digits)
            guard Self.equal(candidate, code) else { continue }
            if let last = lastUsedStep, step <= last { replayed = true } else if matched == nil { matched = step }
        }
        if let matched { return .accepted(step: matched) }
        return replayed ? .replayed : .wrongCode
    }

    /// Constant-time comparison of two codes of the same length.
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in x.indices { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}
