import CAMFACore
import CAMFAPolicyFiles
import CAMFAStore
import Foundation
import Testing

@testable import CAMFADaemon
import CAMFATestSupport

/// The checkpoint writer folds the rows stored since the base into a new base when a take
/// asks for it, through the real store, and the stored checkpoint still restores the state.
@Suite struct CheckpointRebaseTests {
    /// The example policies, their engine, and a writer on a new temporary store.
    static func fixture() throws -> (PolicySet, Engine, CheckpointWriter, PartitionID) {
        let set = try PolicyLoader.loadPolicySet(at: PolicyReloadTests.examples)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-rebase-\(UUID().uuidString.prefix(8))").path
        return (set, Engine(policySet: set, challengeKey: testChallengeKey), CheckpointWriter(store: try CheckpointStore(directory: dir)), PartitionID(topic: "logins", partition: 0))
    }

    @Test func aRebaseLeavesNoRowsAndTheSameState() throws {
        let (set, engine, writer, id) = try Self.fixture()
        defer { try? FileManager.default.removeItem(atPath: writer.store.directory) }
        try writer.store.claim(id, epoch: 1)

        var state = PartitionState(policySet: set)
        state.rebaseMinimumRows = 16
        var offset: Int64 = 0
        func feed(_ n: Int, users: Int) {
            for _ in 0..<n {
                let e = UEBAEvent(appId: "app\(offset % 5)", requestDate: 1_767_225_600_000 + offset * 1_000,
                                  ip: "198.51.100.\(offset % 200)", originalIdentity: "user-\(offset % Int64(users))",
                                  behaviorType: "login", behaviorResult: offset % 3 == 0 ? "failure" : "success")
                _ = engine.process(e, coordinates: "logins/0/\(offset)", state: &state)
                offset += 1
            }
        }
        func checkpoint() -> (CheckpointWriter.Completion, rebase: Bool) {
            let snapshot = state.takeChangeSnapshot()
            let pending = PendingCheckpoint(partition: id, epoch: 1, nextOffset: offset, carry: nil, snapshot: snapshot)
            writer.submit(pending)
            writer.barrier()
            return (writer.takeCompletions().last!, snapshot.rebase)
        }

        feed(300, users: 100)
        let first = checkpoint()
        #expect(first.0.error == nil)
        #expect(try writer.store.load(id)?.segments.isEmpty == false)
        var rebased = false
        for _ in 0..<20 where !rebased {
            feed(40, users: 100)
            let (completion, rebase) = checkpoint()
            #expect(completion.error == nil)
            #expect(completion.rebaseError == nil)
            rebased = rebase
        }
        #expect(rebased, "the rows on top of the base grew past the threshold")
        let stored = try #require(try writer.store.load(id))
        #expect(stored.entries.isEmpty && stored.users.isEmpty, "the rows were folded into the base")
        #expect(stored.nextOffset == offset)
        let restored = try PartitionState(restoringMetadata: stored.metadata, segments: stored.segments, entries: stored.entries,
                                          users: stored.users, policySet: set, parallel: PartitionState.onEveryCore)
        #expect(restored.serialized() == state.serialized())
    }

    /// A revoke or a shutdown writes its checkpoint at once and leaves the rebase to the
    /// next owner, so the next owner's claim never waits for a whole rewrite.
    @Test func aFinalCheckpointDoesNotRebase() throws {
        let (set, engine, writer, id) = try Self.fixture()
        defer { try? FileManager.default.removeItem(atPath: writer.store.directory) }
        var state = PartitionState(policySet: set)
        state.rebaseMinimumRows = 1
        for i in 0..<200 {
            let e = UEBAEvent(appId: "app", requestDate: 1_767_225_600_000 + Int64(i) * 1_000, ip: "198.51.100.\(i % 50)",
                              originalIdentity: "user-\(i % 50)", behaviorType: "login", behaviorResult: "success")
            _ = engine.process(e, coordinates: "logins/0/\(i)", state: &state)
            if i == 99 {
                let full = writer.writeNow(PendingCheckpoint(partition: id, epoch: 1, nextOffset: 100, carry: nil, snapshot: state.takeChangeSnapshot()))
                #expect(full.error == nil)
            }
        }
        let snapshot = state.takeChangeSnapshot()
        #expect(snapshot.rebase)
        let completion = writer.writeNow(PendingCheckpoint(partition: id, epoch: 1, nextOffset: 200, carry: nil, snapshot: snapshot))
        #expect(completion.error == nil)
        #expect(completion.rebaseSeconds == nil)
        let stored = try #require(try writer.store.load(id))
        #expect(!stored.entries.isEmpty, "the rows stay on top of the base")
        let restored = try PartitionState(restoringMetadata: stored.metadata, segments: stored.segments, entries: stored.entries,
                                          users: stored.users, policySet: set)
        #expect(restored.serialized() == state.serialized())
    }
}

