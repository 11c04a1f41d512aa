import CAMFACore

/// A user task's records between reading and deciding (README "Repartitioning"). An event
/// with statistics in other keys' tasks waits here for their readings; every record after
/// it waits too, so the task still decides strictly in offset order, exactly as if it had
/// had every statistic itself. Records leave from the front, once the front is ready.
/// Pure: `Held` is what keeps the record's bytes (the Kafka message) alive.
struct ParkedRecords<Held> {
    enum Work {
        /// An admitted event, decided with its readings.
        case event(UEBAEvent, trigger: FlowTrigger, onlyFlow: String?)
        /// Refused when read (the reason is kept: the clock that judged it moves on).
        case deadLetter(reason: String, code: PipelineRequestError.Code)
        /// One of camfa's own records (a result, a release), handled in its turn.
        case control(kind: [UInt8])
        /// A reply, already matched to its event: only its offset is processed in its turn.
        case reply
    }

    struct Entry {
        var offset: Int64
        var held: Held?
        /// What the record weighs (its value), for `engine.maxParkedBytes`.
        var bytes = 0
        var work: Work
        /// Key task partition → the statistics of the operations sent there, in order, not
        /// answered yet. Named by descriptor (`Engine.descriptor`), not by index: a reload
        /// while the event waits may renumber the statistics.
        var waiting: [Int32: [String]] = [:]
        var readings: [String: RemoteReading] = [:]
        var isReady: Bool { waiting.isEmpty }
    }

    private var entries: [Entry] = []
    private var head = 0

    var count: Int { entries.count - head }
    /// The parked entries' `bytes`.
    private(set) var bytes = 0
    var isEmpty: Bool { count == 0 }
    /// Whether the front waits for readings (what a stall report names).
    var front: Entry? { isEmpty ? nil : entries[head] }

    /// Offsets must grow: records are parked in the order they are read.
    mutating func append(_ entry: Entry) {
        precondition(isEmpty || entry.offset > entries[entries.count - 1].offset, "parked out of order")
        entries.append(entry)
        bytes += entry.bytes
    }

    /// Files the readings of `destination` for the event at `offset`. False when no parked
    /// event waits for that key task: a duplicate, a reply to an earlier ownership of the
    /// partition, or to an event decided before a restart.
    mutating func reply(offset: Int64, destination: Int32, readings: [RemoteReading]) -> Bool {
        var lo = head, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].offset < offset { lo = mid + 1 } else { hi = mid }
        }
        guard lo < entries.count, entries[lo].offset == offset, let names = entries[lo].waiting.removeValue(forKey: destination) else { return false }
        // One reading per operation; a short reply leaves the rest unread (null).
        for (name, reading) in zip(names, readings) { entries[lo].readings[name] = reading }
        return true
    }

    /// The front entry, if it is ready, removed.
    mutating func popReady() -> Entry? {
        guard head < entries.count, entries[head].isReady else { return nil }
        let e = entries[head]
        bytes -= e.bytes
        entries[head].held = nil
        head += 1
        if head > 1024 && head * 2 > entries.count {
            entries.removeFirst(head)
            head = 0
        }
        return e
    }

    /// Everything, dropped (the partition is revoked or the task stops): what is not
    /// decided is read again by the next owner from the checkpoint.
    mutating func removeAll() {
        entries.removeAll()
        head = 0
        bytes = 0
    }
}
