import CAMFADaemon
@testable import CAMFAServer
import Foundation
import Testing

/// Issue 22, HTTP hardening: methods, rate limits and slow clients, on the real listener.
@Suite struct HTTPHardeningTests {
    @Test func anUndeclaredMethodIs405WithAllow() async throws {
        try await withServer { client in
            _ = try await client.send("GET", "/healthz", template: "/healthz")
            let r = try await client.send("DELETE", "/v1/evaluate", template: nil, key: TestKeys.evaluate)
            #expect(r.status == 405)
            #expect(r.header("Allow") == "POST")
            #expect(r.error["code"] as? String == "method-not-allowed")
            let release = try await client.send("GET", "/v1/users/alice/release", template: nil, key: TestKeys.admin)
            #expect(release.status == 405)
            #expect(release.header("Allow") == "POST")
            // An unknown path stays 404.
            let missing = try await client.send("DELETE", "/v1/nothing", template: nil, key: TestKeys.admin)
            #expect(missing.status == 404)
        }
    }

    /// Attack: a key could send requests as fast as it liked (each evaluation or result
    /// is a produce to Kafka, and each result a guess at a challenge id).
    @Test func aKeyOverItsRateLimitGets429WithRetryAfter() async throws {
        try await withServer({ $0.rateLimitPerSecond = 1; $0.rateLimitBurst = 3 }) { client in
            var statuses: [Int] = []
            var limited: HTTPReply?
            for _ in 0..<30 where limited == nil {
                let r = try await client.send("GET", "/v1/users/alice/mfa-status", template: "/v1/users/{id}/mfa-status", key: TestKeys.status)
                statuses.append(r.status)
                if r.status == 429 { limited = r }
            }
            #expect(statuses.prefix(3).allSatisfy { $0 == 200 }, "\(statuses)")
            let r = try #require(limited, "30 requests at once never hit a limit of 3 + 1/s: \(statuses)")
            #expect(Int(r.header("Retry-After") ?? "") ?? 0 >= 1)
            #expect(r.error["code"] as? String == "rate-limited")
            // Buckets are per key: another key is not affected.
            let other = try await client.send("POST", "/v1/admin/reload", template: "/v1/admin/reload", key: TestKeys.admin)
            #expect(other.status == 200)
        }
    }

    @Test func theBucketRefillsAtItsRate() {
        final class Clock: @unchecked Sendable { var now = 100.0 }
        let clock = Clock()
        let limiter = RateLimiter(perSecond: 2, burst: 3, clock: { clock.now })
        #expect((0..<3).map { _ in limiter.take("k") } == [nil, nil, nil])
        #expect(limiter.take("k") == 1)
        #expect(limiter.take("other") == nil)
        clock.now += 0.5  // one token back
        #expect(limiter.take("k") == nil)
        #expect(limiter.take("k") == 1)
        clock.now += 10  // refilled to the burst, no more
        #expect((0..<4).map { _ in limiter.take("k") } == [nil, nil, nil, 1])
        #expect(RateLimiter(perSecond: 0, burst: 1).take("k") == nil)
    }

    /// Attack (slowloris): a client that sends its headers a byte at a time held a
    /// connection as long as it kept sending.
    @Test func aClientTricklingItsHeadersIsDisconnected() async throws {
        try await withServer({ $0.headerTimeout = 500; $0.idleTimeout = 60_000 }) { client in
            let port = try #require(Int(client.base.split(separator: ":").last ?? ""))
            // Keep the recorder non-empty for withServer's check.
            _ = try await client.send("GET", "/healthz", template: "/healthz")
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            try #require(rc == 0)
            let start = Date()
            var closedAt: Date?
            // One byte of a never-ending header every 100 ms, for up to 10 s. The timeout is
            // 0.5 s; the bound below leaves room for a loaded machine (the parallel suite).
            let trickle = Array("GET /healthz HTTP/1.1\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 150)
            for b in trickle {
                var byte = b
                if send(fd, &byte, 1, Int32(MSG_NOSIGNAL)) < 0 { closedAt = Date(); break }
                var probe: UInt8 = 0
                if recv(fd, &probe, 1, Int32(MSG_DONTWAIT)) == 0 { closedAt = Date(); break }
                try await Task.sleep(for: .milliseconds(100))
                if Date().timeIntervalSince(start) > 10 { break }
            }
            let closed = try #require(closedAt, "the trickling connection was still open after 10 s")
            #expect(closed.timeIntervalSince(start) < 5)
        }
    }
}
