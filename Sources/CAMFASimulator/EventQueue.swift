/// Episode events scheduled for later event times. A binary min-heap over small keys;
/// the events themselves stay put in a slot array, so sifting moves 24 bytes instead of
/// a whole event. Ties in time go to the earlier scheduled event, which keeps the output
/// independent of heap internals.
struct EventQueue: Sendable {
    private struct Key: Sendable {
        var time: Int64
        var sequence: UInt64
        var slot: Int32

        func precedes(_ other: Key) -> Bool {
            time != other.time ? time < other.time : sequence < other.sequence
        }
    }

    private var heap: [Key] = []
    private var slots: [SimulatedEvent?] = []
    private var freeSlots: [Int32] = []
    private var sequence: UInt64 = 0

    var earliestTime: Int64? { heap.first?.time }

    mutating func push(_ event: SimulatedEvent, at time: Int64) {
        let slot: Int32
        if let free = freeSlots.popLast() {
            slot = free
            slots[Int(free)] = event
        } else {
            slot = Int32(slots.count)
            slots.append(event)
        }
        heap.append(Key(time: time, sequence: sequence, slot: slot))
        sequence += 1
        siftUp(heap.count - 1)
    }

    mutating func pop() -> SimulatedEvent? {
        guard let top = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
        let event = slots[Int(top.slot)].take()
        freeSlots.append(top.slot)
        return event
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        let key = heap[i]
        while i > 0 {
            let parent = (i - 1) / 2
            guard key.precedes(heap[parent]) else { break }
            heap[i] = heap[parent]
            i = parent
        }
        heap[i] = key
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let key = heap[i]
        let n = heap.count
        while true {
            let left = 2 * i + 1
            guard left < n else { break }
            var child = left
            if left + 1 < n, heap[left + 1].precedes(heap[left]) { child = left + 1 }
            guard heap[child].precedes(key) else { break }
            heap[i] = heap[child]
            i = child
        }
        heap[i] = key
    }
}
