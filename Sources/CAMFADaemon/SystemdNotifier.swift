import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// sd_notify(3) without libsystemd: datagrams to `$NOTIFY_SOCKET` (a path, or `@name` for
/// an abstract socket). Without the variable every call is a no-op, so the daemon runs the
/// same outside systemd.
///
/// The poll thread calls `tick` once per loop iteration: READY=1 goes out once the first
/// assignment is restored and the pipeline is healthy, and WATCHDOG=1 at half the
/// interval systemd asked for. Pinging from the poll loop, not from a timer, is the point:
/// a wedged loop stops the pings and systemd restarts the daemon.
public final class SystemdNotifier: @unchecked Sendable {
    /// The socket address as the environment gave it; nil when not run by systemd.
    public let socketPath: String?
    /// Half of `$WATCHDOG_USEC`, in nanoseconds; nil when no watchdog is asked for (or it
    /// is meant for another process: `$WATCHDOG_PID`).
    public let watchdogPeriod: UInt64?
    private let fd: Int32
    private var address = sockaddr_un()
    private var addressLength: socklen_t = 0

    // Poll thread only.
    private var readySent = false
    private var lastPing: UInt64 = 0
    private var lastCheck: UInt64 = 0
    private var lastStatus: String?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        var period: UInt64?
        if let usec = environment["WATCHDOG_USEC"].flatMap(UInt64.init), usec > 0,
           environment["WATCHDOG_PID"].flatMap(Int32.init).map({ $0 == getpid() }) ?? true {
            period = usec * 1000 / 2
        }
        watchdogPeriod = path == nil ? nil : period
        guard let path, let (addr, length) = Self.address(path) else {
            socketPath = nil
            fd = -1
            return
        }
        socketPath = path
        address = addr
        addressLength = length
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    deinit { if fd >= 0 { close(fd) } }

    public var isEnabled: Bool { fd >= 0 }

    /// `KEY=value` lines, one per field, as sd_notify expects. Newlines inside a value
    /// would start a new field, so they become spaces.
    public static func message(_ fields: [(String, String)]) -> String {
        fields.map { "\($0.0)=\($0.1.replacingOccurrences(of: "\n", with: " "))\n" }.joined()
    }

    /// Sends one datagram; false when not enabled or the send failed. Never blocks: a
    /// receiver that does not read must not stall the poll thread.
    @discardableResult
    public func send(_ fields: [(String, String)]) -> Bool {
        guard fd >= 0 else { return false }
        let bytes = Array(Self.message(fields).utf8)
        var addr = address
        let sent = withUnsafePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL), $0, addressLength)
            }
        }
        return sent == bytes.count
    }

    /// Called from the poll loop on every iteration; cheap unless something is due.
    public func tick(_ health: PipelineHealth, now: UInt64 = DispatchTime.now().uptimeNanoseconds) {
        guard fd >= 0 else { return }
        if let period = watchdogPeriod, readySent, now &- lastPing >= period {
            lastPing = now
            send([("WATCHDOG", "1")])
        }
        // Readiness and STATUS are looked at a few times a second, not on every turn.
        guard now &- lastCheck >= 200_000_000 || lastCheck == 0 else { return }
        lastCheck = now
        let snapshot = health.snapshot
        let status = snapshot.unhealthyReason.map { "not ready: \($0)" } ?? "consuming"
        if !readySent {
            guard health.assignmentsHandled > 0, snapshot.ready else { return }
            readySent = true
            lastStatus = status
            lastPing = now
            send([("READY", "1"), ("STATUS", status)] + (watchdogPeriod == nil ? [] : [("WATCHDOG", "1")]))
            return
        }
        if status != lastStatus {
            lastStatus = status
            send([("STATUS", status)])
        }
    }

    /// Graceful shutdown has begun.
    public func stopping() { send([("STOPPING", "1"), ("STATUS", "stopping")]) }

    /// A one-off status line (`systemctl status` shows it), e.g. a reload's outcome. No
    /// RELOADING=1/READY=1 pair: the unit's reload is a plain signal (ExecReload=kill -HUP),
    /// and READY=1 must not go out before the first assignment is restored.
    public func status(_ text: String) { send([("STATUS", text)]) }

    /// `sockaddr_un` for a path or an abstract name; nil when too long.
    static func address(_ path: String) -> (sockaddr_un, socklen_t)? {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else { return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let base = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        // An abstract name is exactly its bytes; a path is NUL-terminated.
        return (addr, socklen_t(base + bytes.count + (abstract ? 0 : 1)))
    }
}
