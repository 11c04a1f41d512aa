import CAMFACore

/// The MAC on records camfa writes into its own input topic (API-mode events, forwarded MFA
/// results, releases). The input topic is shared with every UEBA producer, and its control
/// headers (`camfa.kind`, `camfa.trigger`, …) change what a record means: a producer who
/// could set them would clear challenges. So a record that carries any `camfa.` header is
/// believed only with a valid `camfa.mac`: HMAC-SHA256 over the key, the value and every
/// `camfa.` header, each length-prefixed so that no two records encode alike.
///
/// Why a MAC rather than an internal topic: the order of a user's events and results is
/// what makes results exact (a result applies to the state its events built), and only one
/// topic-partition gives that order; a second topic would need a merge by time that a
/// producer's clock could steer. The MAC keeps one log and costs nothing for UEBA events,
/// which carry no `camfa.` header.
public struct RecordAuthenticator: Sendable {
    public static let macHeader = "camfa.mac"
    static let controlPrefix = "camfa."

    private let mac: HMACSHA256

    public init(secret: [UInt8]) {
        mac = HMACSHA256(key: HMACSHA256(key: secret).authenticate(Array("camfa record mac v1".utf8)))
    }

    /// The headers to write: `headers` (all `camfa.` control headers) plus `camfa.mac`.
    public func sign(key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8]?)]) -> [(String, [UInt8]?)] {
        headers + [(Self.macHeader, Array(hex(tag(key: key, value: value, headers: headers)).utf8))]
    }

    /// Whether `headers` (as read) carry a valid MAC for this key and value.
    public func verify(key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8]?)]) -> Bool {
        let macs = headers.filter { $0.0 == Self.macHeader }
        guard macs.count == 1, let presented = macs[0].1 else { return false }
        let expected = Array(hex(tag(key: key, value: value, headers: headers.filter { $0.0 != Self.macHeader })).utf8)
        return HMACSHA256.equal(presented, expected)
    }

    private func tag(key: [UInt8]?, value: [UInt8], headers: [(String, [UInt8]?)]) -> [UInt8] {
        var m: [UInt8] = []
        func field(_ b: [UInt8]?) {
            guard let b else { m += [0xFF, 0xFF, 0xFF, 0xFF]; return }
            let n = UInt32(b.count)
            m += [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)]
            m += b
        }
        field(key)
        field(value)
        // Every control header, in name order (stable, so repeated names keep their order).
        let control = headers.enumerated().filter { $0.element.0.hasPrefix(Self.controlPrefix) }
            .sorted { ($0.element.0, $0.offset) < ($1.element.0, $1.offset) }.map(\.element)
        field(Array(String(control.count).utf8))
        for (name, v) in control {
            field(Array(name.utf8))
            field(v)
        }
        return mac.authenticate(m)
    }

    private func hex(_ b: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(b.count * 2)
        for x in b { out += [digits[Int(x >> 4)], digits[Int(x & 0xF)]] }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether a record's headers include any control header (a UEBA event's do not).
    public static func hasControlHeaders(_ headers: [(String, [UInt8]?)]) -> Bool {
        headers.contains { $0.0.hasPrefix(controlPrefix) }
    }
}
