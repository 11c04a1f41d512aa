/// Which offset of one partition may be committed: an event's offset is done when every
/// output it caused (MFA events, dead letters) has been acknowledged by the broker, and
/// the committable position is just past the longest done prefix. Outputs are acknowledged
/// out of order across partitions and retries, so a simple "last processed" would commit
/// past an event whose MFA event could still be lost.
public struct OffsetTracker: Sendable, Equatable {
    private var offsets: [Int64] = []
    private var remaining: [Int32] = []
    private var head = 0
    /// The next offset to consume after the done prefix (Kafka's commit semantics).
    public private(set) var committable: Int64?

    public init(startingAt offset: Int64? = nil) { committable = offset }

    /// Records a processed event and how many outputs it is waiting for.
    public mutating func processed(offset: Int64, outputs: Int) {
        offsets.append(offset)
        remaining.append(Int32(outputs))
        advance()
    }

    /// One output of the event at `offset` was acknowledged.
    public mutating func acknowledged(offset: Int64) {
        // Outstanding events are few and sorted; search from the head.
        var lo = head, hi = offsets.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if offsets[mid] < offset { lo = mid + 1 } else { hi = mid }
        }
        guard lo < offsets.count, offsets[lo] == offset, remaining[lo] > 0 else { return }
        remaining[lo] -= 1
        advance()
    }

    /// Events processed whose outputs are not all acknowledged yet.
    public var inFlight: Int { offsets.count - head }

    /// The next offset after every processed event, acknowledged or not: what a state
    /// snapshot taken now covers.
    public var processedNext: Int64? { head < offsets.count ? offsets[offsets.count - 1] + 1 : committable }

    private mutating func advance() {
        while head < offsets.count, remaining[head] == 0 {
            committable = offsets[head] + 1
            head += 1
        }
        // Compact now and then so memory follows the in-flight window, not the history.
        if head > 4096, head * 2 > offsets.count {
            offsets.removeFirst(head)
            remaining.removeFirst(head)
            head = 0
        }
    }

    public static func == (a: OffsetTracker, b: OffsetTracker) -> Bool {
        a.committable == b.committable && Array(a.offsets[a.head...]) == Array(b.offsets[b.head...])
            && Array(a.remaining[a.head...]) == Array(b.remaining[b.head...])
    }
}
