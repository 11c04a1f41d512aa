import Foundation
import Testing
import CAMFATestSupport

/// `camfa subscribe` (issue 26 item 3) against `camfa broker`, the topic written by kcat:
/// exactly the filtered user's MFA events of a mixed stream, each once, across a restart.
@Suite struct SubscribeBlackBoxTests {
    static func envelope(id: String, user: String, action: String = "mfa") -> Data {
        Data(#"{"specversion":"1.0","id":"\#(id)","source":"urn:camfa","type":"authing.security.mfa","subject":"\#(user)","time":"2026-01-01T00:00:00.000Z","datacontenttype":"application/json","data":{"user":"\#(user)","appId":"portal","methods":["otp"],"flow":"login_risk","action":"\#(action)"}}"#.utf8)
    }

    /// Runs a subscriber until it has printed `lines` lines (then a little longer, so a
    /// line too many would show), stops it with SIGTERM and returns what it printed.
    static func subscribe(_ arguments: [String], lines: Int) throws -> (out: [String], status: Int32) {
        let p = Process()
        p.executableURL = try camfaBinary()
        p.arguments = ["subscribe"] + arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let collected = LockedData()
        out.fileHandleForReading.readabilityHandler = { h in collected.append(h.availableData) }
        let deadline = Date().addingTimeInterval(40)
        while collected.lineCount < lines, Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        Thread.sleep(forTimeInterval: 2)
        p.terminate()
        p.waitUntilExit()
        out.fileHandleForReading.readabilityHandler = nil
        collected.append(out.fileHandleForReading.readDataToEndOfFile())
        return (collected.text.split(separator: "\n").map(String.init), p.terminationStatus)
    }

    @Test func printsExactlyTheUsersEventsOnceAcrossARestart() throws {
        guard BlackBox.requireKcat() else { return }
        let broker = try BlackBox.broker()
        let topic = "out.subscribe", x = "x-\(UUID().uuidString.prefix(6))", y = "y-\(UUID().uuidString.prefix(6))"
        let ids = (0..<7).map { _ in UUID().uuidString.lowercased() }
        // A mixed stream with a redelivered event (at least once), then more after the restart,
        // including a redelivery of an event printed before it.
        try BlackBox.produce(broker.bootstrap, topic: topic, [
            (x, Self.envelope(id: ids[0], user: x)), (y, Self.envelope(id: ids[1], user: y)), (x, Self.envelope(id: ids[2], user: x)),
            (x, Self.envelope(id: ids[0], user: x)), (y, Self.envelope(id: ids[3], user: y)), (x, Self.envelope(id: ids[4], user: x, action: "deny")),
        ])
        let seen = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-seen-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: seen) }
        let args = ["--bootstrap", broker.bootstrap, "--topic", topic, "--filter", "originalIdentity=\(x)", "--group", "sub-\(UUID().uuidString)",
                    "--from", "beginning", "--seen", seen]
        let first = try Self.subscribe(args, lines: 3)
        #expect(first.status == 0, "a clean stop on SIGTERM")
        try BlackBox.produce(broker.bootstrap, topic: topic, [
            (x, Self.envelope(id: ids[5], user: x)), (x, Self.envelope(id: ids[2], user: x)), (y, Self.envelope(id: ids[6], user: y)),
        ])
        let second = try Self.subscribe(args, lines: 1)
        #expect(second.status == 0)
        let printed = (first.out + second.out).map { line -> String in
            let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(o?["subject"] as? String == x, "only \(x)'s events: \(line)")
            return o?["id"] as? String ?? line
        }
        #expect(printed == [ids[0], ids[2], ids[4], ids[5]], "each of \(x)'s events once, in order")
    }

    @Test func aBadFilterIsRefusedWithItsReason() throws {
        let r = try runCamfa(["subscribe", "--bootstrap", "127.0.0.1:1", "--filter", "user=u1"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("unknown field 'user'"), "\(r.stderr)")
    }
}

private final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func append(_ d: Data) { lock.withLock { data += d } }
    var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
    var lineCount: Int { lock.withLock { data.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) } } }
}
