import CAMFATestSupport
import Testing
@testable import CAMFACore

/// ShardedMap must behave as the dictionary it replaces, and a change after a copy (what a
/// full checkpoint snapshot is) must leave every shard but the changed one shared.
@Suite struct ShardedMapTests {
    /// Whether two dictionaries share their storage. A native Swift dictionary is one
    /// reference to its storage; comparing those is the only way to see a copy without timing.
    static func sameStorage<K>(_ a: [K: Int], _ b: [K: Int]) -> Bool {
        unsafeBitCast(a, to: UnsafeRawPointer.self) == unsafeBitCast(b, to: UnsafeRawPointer.self)
    }

    @Test func behavesAsADictionaryUnderRandomChanges() {
        var rng = SeededRandom(seed: 7)
        var map = ShardedMap<Int>()
        var reference: [String: Int] = [:]
        for step in 0..<20_000 {
            let key = "k\(rng.next() % 3_000)"
            switch rng.next() % 7 {
            case 0, 1:
                map[key] = step
                reference[key] = step
            case 5:
                // In place (`_modify`): inserts when absent, removes when set to nil.
                func flip(_ v: inout Int?) { v = v == nil ? step : nil }
                flip(&map[key])
                flip(&reference[key])
            case 2:
                #expect(map.removeValue(forKey: key) == reference.removeValue(forKey: key))
            case 3:
                if let i = map.index(forKey: key) {
                    map[at: i] += 1
                    reference[key]! += 1
                } else {
                    #expect(reference[key] == nil)
                }
            default:
                if let i = map.index(forKey: key) {
                    map.remove(at: i)
                    reference[key] = nil
                }
            }
            #expect(map[key] == reference[key])
            // The kept count, against the truth.
            #expect(map.count == reference.count && map.count == map.shards.reduce(0) { $0 + $1.count }, "step \(step)")
        }
        #expect(map.count == reference.count)
        #expect(Dictionary(uniqueKeysWithValues: map.map { ($0.key, $0.value) }) == reference)
        #expect(Set(map.keys) == Set(reference.keys))
        #expect(map.count > 100, "the random changes left enough keys to spread over shards")
    }

    @Test func aChangeAfterACopyCopiesOnlyTheShardItTouches() {
        var map = ShardedMap<Int>()
        for i in 0..<10_000 { map["user-\(i)"] = i }
        let snapshot = map
        map["user-42"] = -1
        let changed = ShardedMap<Int>.shard(of: "user-42")
        for s in 0..<ShardedMap<Int>.shardCount {
            #expect(Self.sameStorage(map.shards[s], snapshot.shards[s]) == (s != changed), "shard \(s)")
        }
        #expect(snapshot["user-42"] == 42, "the copy kept the value it was taken with")
        #expect(map["user-42"] == -1)
        #expect(map != snapshot)
    }

    @Test func keysSpreadOverAllShards() {
        var map = ShardedMap<Int>()
        for i in 0..<100_000 { map["u\(i)"] = i }
        let sizes = map.shards.map(\.count)
        // 390 keys per shard on average; a shard three times that would mean a skewed hash.
        #expect(sizes.min()! > 0)
        #expect(sizes.max()! < 3 * 100_000 / ShardedMap<Int>.shardCount)
    }

    @Test func reservingCapacityKeepsTheKeys() {
        var map = ShardedMap<Int>()
        map["a"] = 1
        map.reserveCapacity(1_000_000)
        #expect(map["a"] == 1 && map.count == 1)
        #expect(map.shards.allSatisfy { $0.capacity >= 1_000_000 / ShardedMap<Int>.shardCount })
    }
}
