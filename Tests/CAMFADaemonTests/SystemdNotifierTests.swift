@testable import CAMFADaemon
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// sd_notify over a datagram socket this test binds, as systemd would.
@Suite struct SystemdNotifierTests {
    /// A bound AF_UNIX datagram socket: a path, or an abstract name when `abstract`.
    final class Receiver {
        let fd: Int32
        let name: String
        private let path: String?

        init(abstract: Bool = false) throws {
            let id = UUID().uuidString.prefix(8)
            path = abstract ? nil : FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(id).sock").path
            name = path ?? "@camfa-test-notify-\(id)"
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            guard let (addr, length) = SystemdNotifier.address(name) else { throw CocoaError(.fileWriteInvalidFileName) }
            var a = addr
            let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
            guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EINVAL) }
        }

        /// The next datagram, or nil when none is queued.
        func next() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            return n < 0 ? nil : String(decoding: buffer.prefix(n), as: UTF8.self)
        }

        deinit {
            close(fd)
            if let path { unlink(path) }
        }
    }

    @Test func messageIsOneKeyValueLinePerField() {
        #expect(SystemdNotifier.message([("READY", "1"), ("STATUS", "a\nb")]) == "READY=1\nSTATUS=a b\n")
    }

    @Test func withoutNotifySocketNothingIsSent() {
        let n = SystemdNotifier(environment: ["WATCHDOG_USEC": "1000000"])
        #expect(!n.isEnabled)
        #expect(n.watchdogPeriod == nil)
        #expect(!n.send([("READY", "1")]))
    }

    @Test(arguments: [false, true]) func sendReachesPathAndAbstractSockets(abstract: Bool) throws {
        let r = try Receiver(abstract: abstract)
        let n = SystemdNotifier(environment: ["NOTIFY_SOCKET": r.name])
        #expect(n.isEnabled)
        #expect(n.send([("STATUS", "hello")]))
        #expect(r.next() == "STATUS=hello\n")
        n.stopping()
        #expect(r.next()?.hasPrefix("STOPPING=1\n") == true)
    }

    @Test func watchdogForAnotherProcessIsNotPinged() throws {
        let r = try Receiver()
        let mine = SystemdNotifier(environment: ["NOTIFY_SOCKET": r.name, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "\(getpid())"])
        #expect(mine.watchdogPeriod == 1_000_000_000)
        let other = SystemdNotifier(environment: ["NOTIFY_SOCKET": r.name, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "\(getpid() + 1)"])
        #expect(other.watchdogPeriod == nil)
    }

    @Test func readyOnlyAfterTheFirstAssignmentThenWatchdogAtHalfTheInterval() throws {
        let r = try Receiver()
        let n = SystemdNotifier(environment: ["NOTIFY_SOCKET": r.name, "WATCHDOG_USEC": "1000000"])
        let health = PipelineHealth()
        let s: UInt64 = 1_000_000_000
        var now = 10 * s
        n.tick(health, now: now)
        #expect(r.next() == nil, "not started: neither READY nor WATCHDOG")
        health.setStarted(true)
        now += s
        n.tick(health, now: now)
        #expect(r.next() == nil, "started but no assignment yet")
        health.assignmentHandled()
        health.setPartitionFault(3, "cannot restore")
        now += s
        n.tick(health, now: now)
        #expect(r.next() == nil, "assigned but a partition failed to restore")
        health.setPartitionFault(3, nil)
        now += s
        n.tick(health, now: now)
        let ready = try #require(r.next())
        #expect(ready.split(separator: "\n").contains("READY=1"))
        #expect(ready.split(separator: "\n").contains("STATUS=consuming"))
        // Half of WATCHDOG_USEC = 0.5 s: nothing before, one ping at each period after.
        n.tick(health, now: now + 400_000_000)
        #expect(r.next() == nil)
        var pings = 0
        for step in 1...4 {
            n.tick(health, now: now + UInt64(step) * 500_000_000)
            while let m = r.next() { if m == "WATCHDOG=1\n" { pings += 1 } }
        }
        #expect(pings == 4)
        // A change of health shows in STATUS.
        health.setStorageFault("state store busy")
        n.tick(health, now: now + 5 * s)
        var messages: [String] = []
        while let m = r.next() { messages.append(m) }
        #expect(messages.contains("STATUS=not ready: state store busy\n"))
    }
}
