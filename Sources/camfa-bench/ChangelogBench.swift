import CAMFACore
import CAMFADaemon
import CAMFAStore
import Foundation

/// The changelog a partition's checkpoints would write (README "Changelog topics"), kept as
/// the bytes a restore fetches, to time restoring from it: decoding and applying the
/// records, then building the state. Fetching them from Kafka is not in the figure: the
/// mock broker keeps only ~5 MB per partition.
struct BenchChangelog {
    private(set) var records: [(key: [UInt8], value: [UInt8])] = []
    private var seq: Int64 = 0
    private var generation: Int64 = 0
    private var chunks: UInt32 = 0

    var bytes: Int { records.reduce(0) { $0 + $1.key.count + $1.value.count } }

    mutating func add(_ w: CheckpointWrite) {
        seq += 1
        if w.full { generation += 1 }
        let batch = ChangelogRecord.batch(w, stamp: .init(epoch: 1, seq: seq, generation: generation), chunks: chunks)
        if case .marker(let m) = batch.last! { chunks = m.chunks }
        records.reserveCapacity(records.count + batch.count)
        for r in batch { records.append((r.key, r.value)) }
    }

    struct Timed {
        var state: PartitionState
        var replay: Double
        var decode: Double
    }

    func restore(_ id: PartitionID, _ set: PolicySet) throws -> Timed {
        var t = CheckpointBenchCommand.now()
        var replay = ChangelogReplay()
        for r in records { try replay.apply(key: r.key, value: r.value) }
        guard let c = try replay.checkpoint(partition: id) else { throw ChangelogError(code: .incomplete, message: "no marker") }
        let replaySeconds = CheckpointBenchCommand.now() - t
        t = CheckpointBenchCommand.now()
        let state = try PartitionState(restoringMetadata: c.metadata, segments: c.segments, entries: c.entries,
                                       users: c.users, policySet: set, parallel: PartitionState.onEveryCore)
        return Timed(state: state, replay: replaySeconds, decode: CheckpointBenchCommand.now() - t)
    }
}
