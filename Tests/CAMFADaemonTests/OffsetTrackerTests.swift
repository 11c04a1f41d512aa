import CAMFADaemon
import Testing

@Suite struct OffsetTrackerTests {
    @Test func commitsOnlyPastFullyAcknowledgedPrefix() {
        var t = OffsetTracker()
        t.processed(offset: 10, outputs: 0)
        #expect(t.committable == 11)
        t.processed(offset: 11, outputs: 2)
        t.processed(offset: 12, outputs: 0)
        t.processed(offset: 13, outputs: 1)
        #expect(t.committable == 11)
        t.acknowledged(offset: 13)
        #expect(t.committable == 11)  // 11 still waits for two outputs
        t.acknowledged(offset: 11)
        #expect(t.committable == 11)
        t.acknowledged(offset: 11)
        #expect(t.committable == 14)
        #expect(t.inFlight == 0)
    }

    @Test func unknownAndRepeatedAcknowledgementsChangeNothing() {
        var t = OffsetTracker(startingAt: 5)
        t.processed(offset: 5, outputs: 1)
        t.acknowledged(offset: 4)
        t.acknowledged(offset: 6)
        #expect(t.committable == 5)
        t.acknowledged(offset: 5)
        t.acknowledged(offset: 5)
        #expect(t.committable == 6)
    }

    @Test func randomAcknowledgementOrderAgreesWithAReferenceModel() {
        var seed: UInt64 = 99
        func next() -> UInt64 { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return seed >> 33 }
        for _ in 0..<50 {
            var t = OffsetTracker()
            var pending: [Int] = []  // remaining outputs, indexed by offset
            var acks: [Int64] = []
            for o in Int64(0)..<Int64(6000) {
                let n = Int(next() % 3)
                t.processed(offset: o, outputs: n)
                pending.append(n)
                for _ in 0..<n { acks.append(o) }
            }
            // Shuffle the acknowledgements.
            for i in stride(from: acks.count - 1, to: 0, by: -1) { acks.swapAt(i, Int(next() % UInt64(i + 1))) }
            for a in acks.prefix(acks.count / 2) {
                t.acknowledged(offset: a)
                pending[Int(a)] -= 1
            }
            let firstOpen = pending.firstIndex { $0 > 0 }.map(Int64.init)
            let expected: Int64? = firstOpen.map { $0 == 0 ? nil : $0 } ?? 6000
            #expect(t.committable == expected)
        }
    }

    /// What a checkpoint taken now covers: every processed event, acknowledged or not; the
    /// pipeline holds that checkpoint until `committable` reaches it.
    @Test func processedNextCoversEventsStillInFlight() {
        var t = OffsetTracker(startingAt: 5)
        #expect(t.processedNext == 5)
        t.processed(offset: 5, outputs: 1)
        t.processed(offset: 6, outputs: 0)
        t.processed(offset: 7, outputs: 1)
        #expect(t.committable == 5 && t.processedNext == 8)
        t.acknowledged(offset: 5)
        #expect(t.committable == 7 && t.processedNext == 8)
        t.acknowledged(offset: 7)
        #expect(t.committable == 8 && t.processedNext == 8)
    }
}
