import Foundation
import Testing
@testable import CAMFAStore

/// `drop`: the operator's way out of a corrupt checkpoint (`camfa state drop`).
@Suite struct DropTests {
    private let damaged = PartitionID(topic: "logins", partition: 2)
    private let healthy = PartitionID(topic: "logins", partition: 5)

    private func checkpoint(_ p: PartitionID, epoch: Int64, offset: Int64) -> CheckpointWrite {
        CheckpointWrite(partition: p, epoch: epoch, nextOffset: offset, metadata: [2],
                        upserts: [("event.ip", "192.0.2.\(p.partition)", bytes(Int(p.partition), count: 40))],
                        userUpserts: [("dave", [1, 2, 3])], full: true)
    }

    @Test func droppingRemovesOnlyThatPartitionsCheckpointAndKeepsItsEpoch() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        try store.write(checkpoint(damaged, epoch: 7, offset: 100))
        try store.write(checkpoint(healthy, epoch: 3, offset: 40))
        let before = try snapshot(store, healthy)

        #expect(try store.drop(damaged))
        #expect(try store.load(damaged) == nil)
        #expect(try store.partitions().map(\.0) == [healthy])
        #expect(try snapshot(store, healthy) == before)
        // The epoch row stays: an owner older than the last one is still refused...
        #expect(throws: StoreError.self) { try store.write(checkpoint(damaged, epoch: 6, offset: 120)) }
        // ...and the next owner writes a fresh full checkpoint.
        try store.claim(damaged, epoch: 8)
        try store.write(checkpoint(damaged, epoch: 8, offset: 10))
        #expect(try store.load(damaged)?.nextOffset == 10)
    }

    @Test func droppingAPartitionWithoutACheckpointReportsIt() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        #expect(try store.drop(damaged) == false)
        try store.claim(damaged, epoch: 1)
        // Claimed but never checkpointed: there is nothing to load before or after.
        _ = try store.drop(damaged)
        #expect(try store.load(damaged) == nil)
    }

    @Test func aCorruptRowNoLongerBlocksTheRestoreOnceDropped() throws {
        let dir = TempDirectory()
        let store = try CheckpointStore(directory: dir.path)
        try store.write(checkpoint(damaged, epoch: 1, offset: 100))
        _ = try store.writerIntegerForTesting("UPDATE entries SET sum = sum + 1 RETURNING 1")
        #expect(throws: StoreError.self) { try store.load(damaged) }
        try store.drop(damaged)
        #expect(try store.load(damaged) == nil)
    }
}
