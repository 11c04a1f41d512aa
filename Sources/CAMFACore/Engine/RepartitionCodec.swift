/// The repartition hop's two records (README "Repartitioning"): a *request* carries one
/// event's operations for one key task, a *reply* the readings of one request back to the
/// user's task. Operations name their statistic by keyspace text and slot descriptor, not
/// by index, so instances whose policy sets differ for a moment (a reload reaching one
/// instance first) never apply an operation to the wrong statistic: an unknown one reads
/// as empty.
public struct RepartitionRequest: Sendable, Equatable {
    /// The user's task: where the event is, and where the reply goes.
    public var originPartition: Int32
    public var originOffset: Int64
    /// Every event of the user partition before this offset is decided for good (the user
    /// task's checkpoint): its requests can no longer come again, so the key task forgets
    /// them.
    public var floor: Int64
    /// The key task's partition of the repartition topic.
    public var destination: Int32
    public var operations: [WireOperation]

    public struct WireOperation: Sendable, Equatable {
        public var keyspace: String
        public var slot: String
        public var kind: RemoteOperation.Kind
        public var key: String
        public var time: Int64
        public var passes: Bool
        public var read: Bool
        public var observed: Value
        public var features: [String?]

        public init(keyspace: String, slot: String, kind: RemoteOperation.Kind, key: String, time: Int64, passes: Bool, read: Bool,
                    observed: Value, features: [String?]) {
            self.keyspace = keyspace
            self.slot = slot
            self.kind = kind
            self.key = key
            self.time = time
            self.passes = passes
            self.read = read
            self.observed = observed
            self.features = features
        }
    }

    public init(originPartition: Int32, originOffset: Int64, floor: Int64 = 0, destination: Int32, operations: [WireOperation]) {
        self.originPartition = originPartition
        self.originOffset = originOffset
        self.floor = floor
        self.destination = destination
        self.operations = operations
    }

    /// 2 adds `floor` (version 1 is read with floor 0).
    static let version: UInt8 = 2

    public func encoded() -> [UInt8] {
        var w = BinaryWriter()
        w.writeByte(Self.version)
        w.writeVarInt(Int64(originPartition))
        w.writeVarInt(originOffset)
        w.writeVarInt(floor)
        w.writeVarInt(Int64(destination))
        w.writeVarUInt(UInt64(operations.count))
        for op in operations {
            w.writeString(op.keyspace)
            w.writeString(op.slot)
            w.writeByte(op.kind.rawValue)
            w.writeString(op.key)
            w.writeVarInt(op.time)
            w.writeBool(op.passes)
            w.writeBool(op.read)
            w.writeValue(op.observed)
            w.writeVarUInt(UInt64(op.features.count))
            for f in op.features {
                w.writeBool(f != nil)
                if let f { w.writeString(f) }
            }
        }
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(BinaryDecodingError) {
        var r = BinaryReader(bytes)
        let v = try r.readByte()
        guard v == 1 || v == Self.version else {
            throw BinaryDecodingError(.unsupportedVersion, "repartition request version \(v); this camfa reads 1...\(Self.version)", offset: 0)
        }
        originPartition = try Self.partition(&r)
        originOffset = try r.readVarInt()
        floor = v >= 2 ? try r.readVarInt() : 0
        destination = try Self.partition(&r)
        let n = try r.readCount(minimumItemSize: 8, "operation count")
        var ops: [WireOperation] = []
        ops.reserveCapacity(n)
        for _ in 0..<n {
            let keyspace = try r.readString(), slot = try r.readString()
            guard let kind = RemoteOperation.Kind(rawValue: try r.readByte()) else { throw r.error(.invalidValue, "unknown operation kind") }
            let key = try r.readString(), time = try r.readVarInt(), passes = try r.readBool(), read = try r.readBool()
            let observed = try r.readValue()
            let m = try r.readCount(minimumItemSize: 1, "feature count")
            var features: [String?] = []
            for _ in 0..<m { features.append(try r.readBool() ? try r.readString() : nil) }
            ops.append(WireOperation(keyspace: keyspace, slot: slot, kind: kind, key: key, time: time, passes: passes, read: read,
                                     observed: observed, features: features))
        }
        try r.expectEnd()
        operations = ops
    }

    static func partition(_ r: inout BinaryReader) throws(BinaryDecodingError) -> Int32 {
        let p = try r.readVarInt()
        guard (0...Int64(Int32.max)).contains(p) else { throw r.error(.invalidValue, "partition \(p) out of range") }
        return Int32(p)
    }
}

public struct RepartitionReply: Sendable, Equatable {
    static let version: UInt8 = 1

    /// The user partition the reply is for (a reply copied into another partition is
    /// refused there).
    public var originPartition: Int32
    /// The key task that applied the request.
    public var destination: Int32
    /// The event the readings are for, in the reply's (the user's) partition.
    public var originOffset: Int64
    /// One per operation of the request, in its order.
    public var readings: [RemoteReading]

    public init(originPartition: Int32, destination: Int32, originOffset: Int64, readings: [RemoteReading]) {
        self.originPartition = originPartition
        self.destination = destination
        self.originOffset = originOffset
        self.readings = readings
    }

    public func encoded() -> [UInt8] {
        var w = BinaryWriter()
        w.writeByte(Self.version)
        w.writeVarInt(Int64(originPartition))
        w.writeVarInt(Int64(destination))
        w.writeVarInt(originOffset)
        w.writeVarUInt(UInt64(readings.count))
        for reading in readings {
            switch reading {
            case .statistic(let before, let current):
                w.writeByte(0)
                w.writeValue(before)
                w.writeValue(current)
            case .priors(let priors):
                w.writeByte(1)
                w.writeVarUInt(UInt64(priors.count))
                for p in priors {
                    w.writeBool(p != nil)
                    if let p {
                        w.writeDouble(p.weight)
                        w.writeDouble(p.total)
                    }
                }
            }
        }
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(BinaryDecodingError) {
        var r = BinaryReader(bytes)
        let v = try r.readByte()
        guard v == Self.version else { throw BinaryDecodingError(.unsupportedVersion, "repartition reply version \(v); this camfa reads \(Self.version)", offset: 0) }
        originPartition = try RepartitionRequest.partition(&r)
        destination = try RepartitionRequest.partition(&r)
        originOffset = try r.readVarInt()
        let n = try r.readCount(minimumItemSize: 2, "reading count")
        var readings: [RemoteReading] = []
        for _ in 0..<n {
            switch try r.readByte() {
            case 0: readings.append(.statistic(before: try r.readValue(), current: try r.readValue()))
            case 1:
                let m = try r.readCount(minimumItemSize: 1, "prior count")
                var priors: [RiskScore.Prior?] = []
                for _ in 0..<m { priors.append(try r.readBool() ? RiskScore.Prior(weight: try r.readDouble(), total: try r.readDouble()) : nil) }
                readings.append(.priors(priors))
            default: throw r.error(.invalidValue, "unknown reading kind")
            }
        }
        try r.expectEnd()
        self.readings = readings
    }
}

extension Engine {
    /// The name a statistic's operation travels under: keyspace text and slot descriptor.
    public func descriptor(_ w: RepartitionRequest.WireOperation) -> String { "\(w.keyspace)\u{0}\(w.slot)" }

    /// The statistic `descriptor` names in this policy set, if it has it.
    public func statisticID(descriptor: String) -> RemoteOperation.ID? { statisticsByDescriptor[descriptor] }

    /// `op` as it travels: its statistic named by keyspace text and slot descriptor.
    public func wire(_ op: RemoteOperation) -> RepartitionRequest.WireOperation {
        let ks = policySet.keyspaces[op.keyspace]
        let slot = op.kind == .population ? 0 : policySet.policies[op.id.policy].statistics[op.id.statistic].slot
        return RepartitionRequest.WireOperation(keyspace: ks.keyText, slot: ks.slotDescriptors[slot], kind: op.kind, key: op.key, time: op.time,
                                                passes: op.passes, read: op.read, observed: op.observed, features: op.features)
    }

    /// The key task's side of `wire`: nil for a statistic this policy set does not have.
    public func resolve(_ w: RepartitionRequest.WireOperation) -> RemoteOperation? {
        guard let id = statisticsByDescriptor[descriptor(w)] else { return nil }
        let stat = policySet.policies[id.policy].statistics[id.statistic]
        let keyspace = w.kind == .population ? stat.population?.keyspace : stat.keyspace
        guard let keyspace, policySet.keyspaces[keyspace].keyText == w.keyspace else { return nil }
        return RemoteOperation(id: id, kind: w.kind, keyspace: keyspace, key: w.key, time: w.time, passes: w.passes, read: w.read,
                               observed: w.observed, features: w.features)
    }

    /// A key task applies a request once: a request the task applied already (the user's
    /// task sends again what it read again after a restart) gives nil and changes nothing.
    /// Kept per user partition: the origin offsets applied at or above the floor its
    /// requests carry (below it, every event is decided and never sent again). A set, not a
    /// maximum: a request librdkafka gave up on and that is sent again arrives after later
    /// ones, and must still count.
    public func apply(_ request: RepartitionRequest, state: inout PartitionState) -> RepartitionReply? {
        var applied = state.appliedOrigins[request.originPartition] ?? AppliedOrigins()
        if request.floor > applied.floor {
            applied.floor = request.floor
            applied.offsets = applied.offsets.filter { $0 >= request.floor }
        }
        guard request.originOffset >= applied.floor, applied.offsets.insert(request.originOffset).inserted else {
            state.appliedOrigins[request.originPartition] = applied
            return nil
        }
        state.appliedOrigins[request.originPartition] = applied
        var readings = [RemoteReading](repeating: .statistic(before: .null, current: .null), count: request.operations.count)
        let resolved = request.operations.enumerated().compactMap { i, w in resolve(w).map { (i, $0) } }
        for ((i, _), reading) in zip(resolved, applyRepartitioned(resolved.map(\.1), state: &state)) { readings[i] = reading }
        return RepartitionReply(originPartition: request.originPartition, destination: request.destination, originOffset: request.originOffset,
                                readings: readings)
    }
}
