import Foundation

/// A token bucket per API key (`http.rateLimit`): `burst` requests at once, refilled at
/// `perSecond`. One leaked or misbehaving client key then cannot flood the pipeline's
/// mailbox (every evaluation and result is a produce) nor guess challenge ids at speed.
final class RateLimiter: @unchecked Sendable {
    private struct Bucket {
        var tokens: Double
        var at: Double
    }

    let perSecond: Double
    let burst: Double
    private let lock = NSLock()
    private var buckets: [String: Bucket] = [:]
    private let clock: @Sendable () -> Double

    init(perSecond: Int, burst: Int, clock: @escaping @Sendable () -> Double = { ProcessInfo.processInfo.systemUptime }) {
        self.perSecond = Double(perSecond)
        self.burst = Double(max(1, burst))
        self.clock = clock
    }

    var enabled: Bool { perSecond > 0 }

    /// nil when `key` may go on; otherwise the seconds until it may (for Retry-After).
    func take(_ key: String) -> Int? {
        guard enabled else { return nil }
        let now = clock()
        return lock.withLock {
            var b = buckets[key] ?? Bucket(tokens: burst, at: now)
            b.tokens = min(burst, b.tokens + (now - b.at) * perSecond)
            b.at = now
            defer { buckets[key] = b }
            if b.tokens >= 1 {
                b.tokens -= 1
                return nil
            }
            return max(1, Int(((1 - b.tokens) / perSecond).rounded(.up)))
        }
    }
}
