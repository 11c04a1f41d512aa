import CAMFACore
import CAMFATestSupport
import Testing

@testable import CAMFADaemon

/// Issue 24 item 2: a user task's parked records leave strictly in offset order, each once
/// it has every reply, whatever order, duplicates and strays the replies come in.
@Suite struct ParkedRecordsTests {
    typealias Parked = ParkedRecords<Int>

    static func event(_ offset: Int64, waitingOn keys: [Int32]) -> Parked.Entry {
        let e = UEBAEvent(appId: "a", requestDate: offset, originalIdentity: "u\(offset)")
        var entry = Parked.Entry(offset: offset, held: Int(offset), work: .event(e, trigger: .ueba, onlyFlow: nil))
        for k in keys { entry.waiting[k] = ["event.ip\u{0}p/s\(k)"] }
        return entry
    }

    @Test(arguments: 0..<30) func recordsLeaveInOrderOnceAnswered(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        var parked = Parked()
        var expectedReplies: [(Int64, Int32)] = []
        var offset: Int64 = 0
        for _ in 0..<40 {
            offset += Int64.random(in: 1...3, using: &rng)
            let keys = Array(Set((0..<Int.random(in: 0...3, using: &rng)).map { _ in Int32.random(in: 0..<4, using: &rng) }))
            parked.append(Self.event(offset, waitingOn: keys))
            expectedReplies += keys.map { (offset, $0) }
        }
        // Replies in any order, some twice, and strays for offsets nothing waits at.
        var replies = expectedReplies + expectedReplies.filter { _ in Bool.random(using: &rng) } + [(offset + 5, 0), (-1, 2)]
        replies.shuffle(using: &rng)
        var left: [Int64] = []
        var matched = 0
        for (o, k) in replies {
            if parked.reply(offset: o, destination: k, readings: [.statistic(before: .int(Int64(k)), current: .int(o))]) { matched += 1 }
            while let e = parked.popReady() {
                left.append(e.offset)
                // Every reply it waited for is filed under the statistic its key task counted.
                if case .event = e.work { #expect(e.readings.count == Set(expectedReplies.filter { $0.0 == e.offset }.map(\.1)).count) }
            }
        }
        #expect(matched == expectedReplies.count, "each awaited reply counts once")
        #expect(left == left.sorted() && left.count == 40 && parked.isEmpty, "\(left)")
    }

    @Test func theFrontHoldsBackRecordsThatNeedNothing() {
        var parked = Parked()
        parked.append(Self.event(10, waitingOn: [1]))
        parked.append(Parked.Entry(offset: 11, held: 11, work: .reply))
        parked.append(Self.event(12, waitingOn: []))
        #expect(parked.popReady() == nil, "11 and 12 are ready, 10 is not")
        let answered = parked.reply(offset: 10, destination: 1, readings: [])
        #expect(answered)
        #expect([parked.popReady()?.offset, parked.popReady()?.offset, parked.popReady()?.offset] == [10, 11, 12])
    }
}

/// The hop's records and a key task's once-only application.
@Suite struct RepartitionRecordTests {
    @Test func requestsAndRepliesSurviveTheirEncoding() throws {
        let request = RepartitionRequest(originPartition: 3, originOffset: 42, destination: 1, operations: [
            .init(keyspace: "event.ip", slot: "p/apps/x", kind: .window, key: "203.0.113.7", time: 1_767_225_600_000, passes: true,
                  read: true, observed: .string("portal"), features: []),
            .init(keyspace: "population of r/risk", slot: "r/risk/population;y", kind: .population, key: "", time: 1_767_225_600_000,
                  passes: false, read: true, observed: .null, features: ["203.0.113.7", nil]),
        ])
        #expect(try RepartitionRequest(decoding: request.encoded()) == request)
        let reply = RepartitionReply(originPartition: 3, destination: 1, originOffset: 42, readings: [
            .statistic(before: .int(4), current: .int(5)), .priors([RiskScore.Prior(weight: 1.5, total: 9), nil]),
        ])
        #expect(try RepartitionReply(decoding: reply.encoded()) == reply)
        var truncated = request.encoded()
        truncated.removeLast()
        #expect(throws: BinaryDecodingError.self) { try RepartitionRequest(decoding: truncated) }
    }
}
