import Foundation
import Testing
#if canImport(Glibc)
import Glibc
import CAMFATestSupport
#endif

/// Issue 6's systemd acceptance: sd_notify seen through a NOTIFY_SOCKET this test binds,
/// the unit file checked by systemd-analyze, and `make install-files` into a scratch tree.
@Suite(.serialized) struct SystemdBlackBoxTests {
    /// One broker for the deployment suites (systemd, reload), with their own topics.
    nonisolated(unsafe) static var sharedBroker: BlackBox.Broker?
    static let lock = NSLock()
    static func broker() throws -> BlackBox.Broker {
        try lock.withLock {
            if let b = sharedBroker { return b }
            let b = try BlackBox.Broker(topics: ["systemd", "reload"].flatMap { ["in.\($0)", "out.\($0)", "dlq.\($0)"] })
            sharedBroker = b
            return b
        }
    }

    /// What systemd would be: a bound datagram socket at a path.
    final class NotifySocket {
        let fd: Int32
        let path: String

        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-notify-\(UUID().uuidString.prefix(8)).sock").path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in path.utf8.enumerated() { raw[i] = b }
            }
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard rc == 0 else { throw CLIError(message: "cannot bind \(path): errno \(errno)") }
            var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        /// The next datagram within 0.2 s, or nil.
        func next() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buffer, buffer.count, 0)
            return n < 0 ? nil : String(decoding: buffer.prefix(n), as: UTF8.self)
        }

        deinit {
            close(fd)
            unlink(path)
        }
    }

    static func fields(_ message: String) -> [String] { message.split(separator: "\n").map(String.init) }

    @Test func readyAfterAssignmentWatchdogRepeatsStoppingOnSigterm() throws {
        let broker = try Self.broker()
        let notify = try NotifySocket()
        let daemon = try BlackBox.Daemon(bootstrap: broker.bootstrap, name: "systemd", group: "bb-systemd",
                                         environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"])
        var readyAt: Int?
        var logHadAssignmentAtReady = false
        var messages: [String] = []
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, daemon.process.isRunning {
            guard let m = notify.next() else { continue }
            messages.append(m)
            if readyAt == nil, Self.fields(m).contains("READY=1") {
                readyAt = messages.count - 1
                logHadAssignmentAtReady = !daemon.logLines("partitions assigned").isEmpty
            }
            if readyAt != nil, messages.dropFirst(readyAt! + 1).filter({ Self.fields($0).contains("WATCHDOG=1") }).count >= 3 { break }
        }
        let ready = try #require(readyAt, "no READY=1; got \(messages)\n\(daemon.log)")
        #expect(logHadAssignmentAtReady, "READY=1 came before the log said partitions were assigned")
        #expect(!messages.prefix(ready).contains { Self.fields($0).contains("WATCHDOG=1") }, "watchdog pings before READY")
        #expect(Self.fields(messages[ready]).contains { $0.hasPrefix("STATUS=") })
        #expect(messages.dropFirst(ready + 1).filter { Self.fields($0).contains("WATCHDOG=1") }.count >= 3, "\(messages)")

        daemon.process.terminate()
        var stopping = false
        let stopDeadline = Date().addingTimeInterval(20)
        while Date() < stopDeadline, !stopping {
            if let m = notify.next() { stopping = Self.fields(m).contains("STOPPING=1") } else if !daemon.process.isRunning { break }
        }
        #expect(stopping, "no STOPPING=1 after SIGTERM")
        #expect(daemon.stop() == 0, "\(daemon.log)")
    }

    /// Runs a tool; nil when it is not installed (the caller skips, or fails under CI).
    static func run(_ tool: String, _ arguments: [String], in directory: URL? = nil) throws -> ToolResult? {
        guard let r = try runTool(tool, arguments, in: directory) else {
            if isCI { Issue.record("\(tool) is not installed") }
            return nil
        }
        return r
    }

    /// Installs into a scratch prefix so the unit's ExecStart names a binary that exists,
    /// which is what `systemd-analyze verify` checks.
    static func installTree() throws -> (root: URL, result: ToolResult)? {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-install-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("dest/etc/camfa"), withIntermediateDirectories: true)
        // An operator's configuration that must survive the install.
        try "# mine\n".write(to: root.appendingPathComponent("dest/etc/camfa/camfa.yaml"), atomically: true, encoding: .utf8)
        guard let r = try run("make", ["-s", "install-files", "DESTDIR=\(root.path)/dest", "BIN=\(try camfaBinary().path)"]) else { return nil }
        return (root, r)
    }

    @Test func makeInstallFilesPutsEverythingInPlaceAndKeepsAnExistingConfig() throws {
        guard let (root, r) = try Self.installTree() else { return }
        defer { try? FileManager.default.removeItem(at: root) }
        #expect(r.status == 0, "\(r.stderr)")
        let dest = root.appendingPathComponent("dest")
        #expect(FileManager.default.isExecutableFile(atPath: dest.appendingPathComponent("usr/local/bin/camfa").path))
        let unit = try String(contentsOf: dest.appendingPathComponent("etc/systemd/system/camfa.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/camfa run --config /etc/camfa/camfa.yaml"))
        #expect(try String(contentsOf: dest.appendingPathComponent("etc/camfa/camfa.yaml"), encoding: .utf8) == "# mine\n")
        // The recommended set is the installed default (issue 23); the examples are the demos.
        let recommended = try FileManager.default.contentsOfDirectory(atPath: packageRoot.appendingPathComponent("policies/recommended").path)
            .filter { $0.hasSuffix(".yaml") }
        #expect(!recommended.isEmpty)
        for f in recommended {
            #expect(FileManager.default.fileExists(atPath: dest.appendingPathComponent("etc/camfa/policies/\(f)").path), "\(f)")
        }
        // The policies as installed load (the config is the operator's, so check the policies only).
        let check = try runCamfa(["policy", "validate", dest.appendingPathComponent("etc/camfa/policies").path])
        #expect(check.status == 0, "\(check.stderr)")
    }

    @Test func unitVerifiesAndItsExposureIsAtMostTwo() throws {
        // verify checks that ExecStart exists: install with the prefix pointing into a
        // scratch tree (no DESTDIR), so the installed unit names the installed binary.
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-verify-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: root) }
        guard let install = try Self.run("make", ["-s", "install-files", "PREFIX=\(root.path)/usr", "SYSCONFDIR=\(root.path)/etc",
                                                   "UNITDIR=\(root.path)/unit", "BIN=\(try camfaBinary().path)"]) else { return }
        #expect(install.status == 0, "\(install.stderr)")
        let unit = root.appendingPathComponent("unit/camfa.service").path
        #expect(try String(contentsOfFile: unit, encoding: .utf8).contains("ExecStart=\(root.path)/usr/bin/camfa run --config \(root.path)/etc/camfa/camfa.yaml"))
        guard let verify = try Self.run("systemd-analyze", ["verify", unit], in: root) else { return }
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stderr.isEmpty, "warnings: \(verify.stderr)")

        guard let security = try Self.run("systemd-analyze", ["security", "--offline=yes", "--no-pager", "deploy/camfa.service"]) else { return }
        let text = security.stdout + security.stderr
        let match = try #require(text.firstMatch(of: /Overall exposure level for camfa\.service: ([0-9]+\.[0-9]+)/), "\(text)")
        let exposure = try #require(Double(match.1))
        #expect(exposure <= 2.0, "exposure \(exposure)")
    }
}
