import Foundation
import Testing
@testable import CAMFAStore

/// The checkpoint-size benchmark from issue 5 (full ≤ 2 s, restore ≤ 3 s for 1M users' state).
/// Off by default; numbers only mean something in a release build:
///
///     CAMFA_STORE_BENCH=1000000 swift test -c release --filter StoreBenchmark
@Suite struct StoreBenchmark {
    static let size = ProcessInfo.processInfo.environment["CAMFA_STORE_BENCH"].flatMap { Int($0) }

    private func measure<T>(_ label: String, _ body: () throws -> T) rethrows -> T {
        let start = ContinuousClock.now
        let result = try body()
        print("StoreBenchmark: \(label): \(ContinuousClock.now - start)")
        return result
    }

    @Test(.enabled(if: size != nil, "set CAMFA_STORE_BENCH=<entries> to run"))
    func fullIncrementalAndRestore() throws {
        let n = Self.size ?? 0
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        let p = PartitionID(topic: "logins", partition: 0)
        let keyspaces = ["event.ip", "user.ip", "user.country", "event.asn"]
        // Hash-map order, as the engine would hand its changed keys over.
        var upserts = (0..<n).map { i in
            (keyspace: keyspaces[i % 4], key: "user-\(String(i, radix: 36))@example.com", value: bytes(i, count: 60))
        }
        var generator = SystemRandomNumberGenerator()
        upserts.shuffle(using: &generator)
        let users = (0..<(n / 10)).map { (user: "user-\($0)@example.com", value: bytes(-$0, count: 60)) }

        try measure("full checkpoint, \(n) entries + \(n / 10) users") {
            try store.write(CheckpointWrite(partition: p, epoch: 1, nextOffset: 1, metadata: [1],
                                            upserts: upserts, userUpserts: users, full: true))
        }
        var incremental = CheckpointWrite(partition: p, epoch: 1, nextOffset: 2, metadata: [2])
        for i in 0..<(n / 100) {
            let e = upserts[(i &* 7919) % n]
            incremental.upserts.append((e.keyspace, e.key, bytes(i + n, count: 60)))
        }
        try measure("incremental checkpoint, \(n / 100) changed keys") { try store.write(incremental) }
        let loaded = try measure("restore") { try #require(try store.load(p)) }
        #expect(loaded.entries.count == n)
        #expect(loaded.users.count == n / 10)
        #expect(loaded.nextOffset == 2)
    }
}
