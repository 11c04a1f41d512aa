/// The versioned binary form of a partition's state. Two shapes from the same pieces:
/// - `serialized()`: one self-checking blob (magic, version, metadata, entries, users,
///   FNV-1a checksum) for tests, dumps and simple stores;
/// - `takeChanges()` + per-key blobs: what an incremental checkpoint writes.
/// Keys are written sorted so the same state always gives the same bytes.
extension PartitionState {
    static let magic: [UInt8] = Array("CMFP".utf8)
    /// 2 adds each slot's window spec to the metadata, so a stored checkpoint can be read
    /// (`camfa state dump`) without the policy files; 3 adds a key task's last applied
    /// origin per user partition, 4 its applied origins above a floor (a v3 origin reads as
    /// the floor just past it), 5 users' factors and refused codes (a map at the end of a
    /// user row). Versions 1 to 4 are still read.
    static let version: UInt8 = 5

    /// Partition-level metadata: watermark, sweep time, and the slot layout the entries
    /// were written with (so a restore under edited policies can map or drop slots).
    public func metadataBlob() -> [UInt8] {
        var w = BinaryWriter()
        w.writeByte(Self.version)
        w.writeVarInt(watermark)
        w.writeVarInt(nextSweep)
        w.writeVarUInt(UInt64(layout.count))
        for ks in layout {
            w.writeString(ks.keyText)
            w.writeVarUInt(UInt64(ks.slotDescriptors.count))
            for (i, d) in ks.slotDescriptors.enumerated() {
                w.writeString(d)
                Self.write(ks.specs[i], to: &w)
            }
        }
        w.writeVarUInt(UInt64(appliedOrigins.count))
        for p in appliedOrigins.keys.sorted() {
            let a = appliedOrigins[p]!
            w.writeVarInt(Int64(p))
            w.writeVarInt(a.floor)
            w.writeVarUInt(UInt64(a.offsets.count))
            var last = a.floor
            for o in a.offsets.sorted() {
                w.writeVarUInt(UInt64(o - last))  // ascending from the floor: small deltas
                last = o
            }
        }
        return w.bytes
    }

    static func write(_ spec: WindowSpec, to w: inout BinaryWriter) {
        w.writeVarInt(spec.length)
        w.writeVarInt(spec.resolution)
        w.writeString(spec.aggregation.storedName)
        w.writeVarInt(spec.allowedLateness)
        w.writeVarInt(Int64(spec.distinctExactLimit))
        w.writeVarInt(Int64(spec.profileTop))
        w.writeVarInt(Int64(spec.profileCapacity))
        if let risk = spec.risk {
            w.writeVarUInt(UInt64(risk.features.count))
            for f in risk.features { w.writeString(f) }
            w.writeVarInt(Int64(risk.capacity))
            w.writeVarInt(Int64(risk.populationCapacity))
            w.writeVarInt(risk.halfLife)
            w.writeDouble(risk.smoothing)
            w.writeDouble(risk.medium)
            w.writeDouble(risk.high)
            w.writeBool(risk.isPopulation)
        }
    }

    static func readSpec(_ r: inout BinaryReader) throws(BinaryDecodingError) -> WindowSpec {
        let length = try r.readVarInt(), resolution = try r.readVarInt(), name = try r.readString()
        let lateness = try r.readVarInt(), limit = try r.readVarInt(), top = try r.readVarInt(), capacity = try r.readVarInt()
        guard let aggregation = Aggregation.allCases.first(where: { $0.storedName == name }) else {
            throw r.error(.invalidValue, "unknown aggregation '\(name)' in checkpoint metadata")
        }
        var risk: RiskSpec?
        if aggregation == .risk {
            let n = Int(try r.readVarUInt(maximum: UInt64(RiskSpec.maxFeatures), "risk features"))
            var features: [String] = []
            for _ in 0..<n { features.append(try r.readString()) }
            let capacity = try r.readVarInt(), populationCapacity = try r.readVarInt(), halfLife = try r.readVarInt()
            let smoothing = try r.readDouble(), medium = try r.readDouble(), high = try r.readDouble()
            let isPopulation = try r.readBool()
            guard (1...Int64(RiskSpec.maxCapacity)).contains(capacity), (1...Int64(RiskSpec.maxCapacity)).contains(populationCapacity) else {
                throw r.error(.invalidValue, "checkpoint metadata: risk capacity out of range")
            }
            risk = RiskSpec(features: features, capacity: Int(capacity), populationCapacity: Int(populationCapacity), halfLife: halfLife,
                            smoothing: smoothing, medium: medium, high: high, isPopulation: isPopulation)
        }
        do {
            return try WindowSpec(
                validating: length, aggregation: aggregation, resolution: resolution, allowedLateness: lateness,
                distinctExactLimit: Int(limit), profileTop: Int(top), profileCapacity: Int(capacity), risk: risk)
        } catch {
            throw r.error(.invalidValue, "checkpoint metadata: \(error)")
        }
    }

    /// The metadata blob's fields; `specs` is empty per keyspace for version 1 blobs.
    struct StoredLayout {
        var watermark: Int64
        var nextSweep: Int64
        var keyspaces: [(text: String, descriptors: [String], specs: [WindowSpec])]
        var appliedOrigins: [Int32: AppliedOrigins] = [:]
    }

    static func readLayout(_ metadata: [UInt8]) throws(BinaryDecodingError) -> StoredLayout {
        var r = BinaryReader(metadata)
        let v = try r.readByte()
        guard (1...Self.version).contains(v) else {
            throw BinaryDecodingError(.unsupportedVersion, "partition checkpoint version \(v); this camfa reads versions 1...\(Self.version)", offset: 0)
        }
        var layout = StoredLayout(watermark: try r.readVarInt(), nextSweep: try r.readVarInt(), keyspaces: [])
        let n = try r.readCount(minimumItemSize: 2, "keyspace count")
        for _ in 0..<n {
            let text = try r.readString()
            let slots = try r.readCount(minimumItemSize: 1, "slot count")
            var descriptors: [String] = [], specs: [WindowSpec] = []
            for _ in 0..<slots {
                descriptors.append(try r.readString())
                if v >= 2 { specs.append(try readSpec(&r)) }
            }
            layout.keyspaces.append((text, descriptors, specs))
        }
        if v == 3 {
            for _ in 0..<(try r.readCount(minimumItemSize: 2, "origin count")) {
                let p = try r.readVarInt(), last = try r.readVarInt()
                guard (0...Int64(Int32.max)).contains(p), last < Int64.max else { throw r.error(.invalidValue, "origin \(p)/\(last) out of range") }
                layout.appliedOrigins[Int32(p)] = AppliedOrigins(floor: last + 1)
            }
        } else if v >= 4 {
            let n = try r.readCount(minimumItemSize: 2, "origin count")
            for _ in 0..<n {
                let p = try r.readVarInt(), floor = try r.readVarInt()
                guard (0...Int64(Int32.max)).contains(p) else { throw r.error(.invalidValue, "origin partition \(p) out of range") }
                var a = AppliedOrigins(floor: floor)
                var last = floor
                for _ in 0..<(try r.readCount(minimumItemSize: 1, "origin offsets")) {
                    let (o, overflow) = last.addingReportingOverflow(Int64(truncatingIfNeeded: try r.readVarUInt()))
                    guard !overflow, o >= last else { throw r.error(.invalidValue, "origin offsets out of order") }
                    a.offsets.insert(o)
                    last = o
                }
                layout.appliedOrigins[Int32(p)] = a
            }
        }
        try r.expectEnd()
        return layout
    }

    public func entryBlob(keyspace: Int, key: String) -> [UInt8]? {
        guard let record = keyspaces[keyspace][key] else { return nil }
        var w = BinaryWriter()
        Self.write(record, to: &w)
        return w.bytes
    }

    public func userBlob(_ id: String) -> [UInt8]? {
        guard let u = users[id] else { return nil }
        var w = BinaryWriter()
        Self.write(u, to: &w)
        return w.bytes
    }

    /// The keyspace texts in layout order; checkpoints name keyspaces by these.
    public var keyspaceNames: [String] { layout.map(\.keyText) }

    public func serialized() -> [UInt8] {
        var w = BinaryWriter()
        w.writeRaw(Self.magic)
        w.writeBytes(metadataBlob())
        for (i, ks) in keyspaces.enumerated() {
            w.writeVarUInt(UInt64(ks.count))
            for key in ks.keys.sorted() {
                w.writeString(key)
                Self.write(ks[key]!, to: &w)
            }
            _ = i
        }
        w.writeVarUInt(UInt64(users.count))
        for id in users.keys.sorted() {
            w.writeString(id)
            Self.write(users[id]!, to: &w)
        }
        var h = FNV64()
        h.add(w.bytes)
        w.writeFixedUInt64(h.value)
        return w.bytes
    }

    public init(restoring bytes: [UInt8], policySet: PolicySet) throws(BinaryDecodingError) {
        guard bytes.count >= Self.magic.count + 8, Array(bytes.prefix(4)) == Self.magic else {
            throw BinaryDecodingError(.invalidValue, "not a camfa partition checkpoint (bad magic)", offset: 0)
        }
        var h = FNV64()
        h.add(bytes[..<(bytes.count - 8)])
        var tail = BinaryReader(Array(bytes.suffix(8)))
        guard try tail.readFixedUInt64() == h.value else {
            throw BinaryDecodingError(.invalidValue, "checkpoint checksum mismatch (corrupt or truncated)", offset: bytes.count - 8)
        }
        var r = BinaryReader(Array(bytes[..<(bytes.count - 8)]), offset: 4)
        let metadata = try r.readBytes()
        self.init(policySet: policySet)
        let mapping = try restoreMetadata(metadata, policySet: policySet)
        for stored in mapping.indices {
            let n = try r.readCount(minimumItemSize: 2, "entry count")
            for _ in 0..<n {
                let key = try r.readString()
                let record = try Self.readRecord(&r)
                place(record, key: key, storedKeyspace: stored, mapping: mapping)
            }
        }
        let users = try r.readCount(minimumItemSize: 2, "user count")
        for _ in 0..<users {
            let id = try r.readString()
            self.users[id] = try Self.readUser(&r)
        }
        try r.expectEnd()
        clearChanges(fullNeeded: !isIdentity(mapping))
    }

    /// Restores from rows alone (a checkpoint without a base: written before bases existed,
    /// or only ever incremental).
    public init(
        restoringMetadata metadata: [UInt8], entries: [(keyspace: String, key: String, value: [UInt8])],
        users: [(user: String, value: [UInt8])], policySet: PolicySet
    ) throws(BinaryDecodingError) {
        self.init(policySet: policySet)
        let mapping = try restoreMetadata(metadata, policySet: policySet)
        var storedIndex: [String: Int] = [:]
        for (i, ks) in try Self.readLayout(metadata).keyspaces.enumerated() { storedIndex[ks.text] = i }
        // Sized once: growing maps of millions of keys rehashes them several times.
        var counts: [String: Int] = [:]
        var runStart = 0
        // Entries come grouped by keyspace (the store orders them), so count runs.
        for i in entries.indices where i + 1 == entries.count || entries[i + 1].keyspace != entries[runStart].keyspace {
            counts[entries[runStart].keyspace, default: 0] += i + 1 - runStart
            runStart = i + 1
        }
        for (text, n) in counts {
            if let s = storedIndex[text], let m = mapping[s] { keyspaces[m.keyspace].reserveCapacity(n) }
        }
        self.users.reserveCapacity(users.count)
        for e in entries {
            guard let stored = storedIndex[e.keyspace] else { continue }
            var r = BinaryReader(e.value)
            let record = try Self.readRecord(&r)
            try r.expectEnd()
            place(record, key: e.key, storedKeyspace: stored, mapping: mapping)
        }
        for u in users {
            var r = BinaryReader(u.value)
            self.users[u.user] = try Self.readUser(&r)
            try r.expectEnd()
        }
        clearChanges(fullNeeded: !isIdentity(mapping))
        rowsSinceBase = entries.count + users.count
    }

    /// What changed since the last call, as a checkpoint writes it; clears the record.
    public mutating func takeChanges() -> PartitionChanges { takeChangeSnapshot().encoded() }

    /// What changed since the last call, as values, and clears the record: the owning
    /// thread's part of a checkpoint. It copies records (reference-counted storage, no
    /// encoding); `encoded()` does the per-key serialization and may run on another thread.
    /// A full snapshot shares the maps themselves (copy-on-write), so the owning thread's
    /// next change to a shard of a map copies that shard once.
    public mutating func takeChangeSnapshot() -> PartitionChangeSnapshot {
        let rebase = takeRebaseDecision()
        var snapshot = PartitionChangeSnapshot(full: needsFullCheckpoint, metadata: metadataBlob())
        snapshot.rebase = rebase
        if needsFullCheckpoint {
            snapshot.maps = keyspaces.enumerated().map { (layout[$0.offset].keyText, $0.element) }
            snapshot.allUsers = users
        } else {
            snapshot.records.reserveCapacity(dirtyKeys.reduce(0) { $0 + $1.count })
            for (i, keys) in dirtyKeys.enumerated() {
                let text = layout[i].keyText
                for key in keys { snapshot.records.append((text, key.string, keyspaces[i][key.string])) }
            }
            snapshot.users.reserveCapacity(dirtyUsers.count)
            for id in dirtyUsers { snapshot.users.append((id.string, users[id.string])) }
        }
        clearChanges(fullNeeded: false)
        return snapshot
    }

    /// Number of keys and users changed since the last checkpoint (while a full one is
    /// pending: number of changes, a key changed twice counting twice).
    public var pendingChangeCount: Int { dirtyKeys.reduce(changesUntilFull) { $0 + $1.count } + dirtyUsers.count }

    mutating func clearChanges(fullNeeded: Bool) {
        // Sized by the last interval's change count, not kept at the largest capacity ever:
        // iterating and clearing a Set costs its capacity, and one burst (e.g. building the
        // state of a new partition) would otherwise make every later take pay for it. After
        // a full take the sets were empty (`changesUntilFull`): start them small.
        let wasFull = needsFullCheckpoint
        for i in dirtyKeys.indices { dirtyKeys[i] = Set(minimumCapacity: wasFull ? 0 : dirtyKeys[i].count) }
        dirtyUsers = Set(minimumCapacity: wasFull ? 0 : dirtyUsers.count)
        changesUntilFull = 0
        needsFullCheckpoint = fullNeeded
    }

    /// Per stored keyspace: the current keyspace and, per stored slot, the current slot.
    typealias SlotMapping = [(keyspace: Int, slots: [Int?])?]

    /// Whether the stored layout is the current one exactly: same keyspaces in the same
    /// positions, same slots in the same order. Anything else (a dropped, added or moved
    /// statistic or keyspace) needs a full checkpoint next: the stored base names keyspaces
    /// by position and holds records in the stored slot order, so rows and metadata of the
    /// new layout must not be written on top of it.
    func isIdentity(_ mapping: SlotMapping) -> Bool {
        guard mapping.count == layout.count else { return false }
        for (i, m) in mapping.enumerated() {
            guard let m, m.keyspace == i, m.slots.count == layout[i].specs.count else { return false }
            for (j, slot) in m.slots.enumerated() where slot != j { return false }
        }
        return true
    }

    mutating func restoreMetadata(_ metadata: [UInt8], policySet: PolicySet) throws(BinaryDecodingError) -> SlotMapping {
        let stored = try Self.readLayout(metadata)
        watermark = stored.watermark
        nextSweep = stored.nextSweep
        appliedOrigins = stored.appliedOrigins
        var mapping: SlotMapping = []
        for ks in stored.keyspaces {
            if let current = layout.firstIndex(where: { $0.keyText == ks.text }) {
                mapping.append((current, ks.descriptors.map { layout[current].slotDescriptors.firstIndex(of: $0) }))
            } else {
                mapping.append(nil)
            }
        }
        return mapping
    }

    private mutating func place(_ stored: KeyRecord, key: String, storedKeyspace: Int, mapping: SlotMapping) {
        guard let m = mapping[storedKeyspace] else { return }
        var record = keyspaces[m.keyspace][key]
            ?? KeyRecord(windows: ContiguousArray(repeating: nil, count: layout[m.keyspace].specs.count))
        var any = false
        for (i, w) in stored.windows.enumerated() {
            guard let w, i < m.slots.count, let target = m.slots[i] else { continue }
            record.windows[target] = w
            any = true
        }
        if any { keyspaces[m.keyspace][key] = record }
    }

    static func write(_ record: KeyRecord, to w: inout BinaryWriter) {
        w.writeVarUInt(UInt64(record.windows.count))
        for window in record.windows {
            if let window {
                w.writeBool(true)
                window.write(to: &w)
            } else {
                w.writeBool(false)
            }
        }
    }

    static func readRecord(_ r: inout BinaryReader) throws(BinaryDecodingError) -> KeyRecord {
        let n = try r.readCount(minimumItemSize: 1, "slot count")
        var windows = ContiguousArray<WindowState?>()
        windows.reserveCapacity(n)
        for _ in 0..<n {
            windows.append(try r.readBool() ? try WindowState(from: &r) : nil)
        }
        return KeyRecord(windows: windows)
    }

    static func write(_ u: UserState, to w: inout BinaryWriter) {
        w.writeVarInt(u.lastSeen)
        if let l = u.lastLocation {
            w.writeBool(true)
            w.writeDouble(l.point.latitude)
            w.writeDouble(l.point.longitude)
            w.writeDouble(l.point.accuracyRadiusKm)
            w.writeVarInt(l.point.time)
            w.writeValue(l.city.map(Value.string) ?? .null)
            w.writeValue(l.country.map(Value.string) ?? .null)
        } else {
            w.writeBool(false)
        }
        w.writeVarUInt(UInt64(u.pending.count))
        for p in u.pending {
            w.writeString(p.flow)
            w.writeString(p.id)
            w.writeVarUInt(UInt64(p.methods.count))
            for m in p.methods { w.writeString(m.rawValue) }
            w.writeVarInt(p.since)
            w.writeVarInt(p.expiresAt)
        }
        // [time, challenge id] when the verified challenge is known; a bare int (or null)
        // otherwise, which is also all that earlier checkpoints hold. A user with factors,
        // refused codes or challenges of an app (version 5) has a map here instead.
        let verified: Value = if let t = u.lastVerified, let id = u.lastVerifiedChallenge {
            .list([.int(t), .string(id)])
        } else {
            u.lastVerified.map(Value.int) ?? .null
        }
        let apps = u.pending.compactMap { p in p.app.map { (p.id, Value.string($0)) } }
        let deviceOf = u.pending.compactMap { p in p.device.map { (p.id, Value.string($0)) } }
        guard !u.factors.isEmpty || u.verification != VerificationCounters() || !apps.isEmpty || !deviceOf.isEmpty || !u.devices.isEmpty else {
            w.writeValue(verified)
            return
        }
        var m = ValueMap([("verified", verified)])
        if !apps.isEmpty { m[string: "apps"] = .map(ValueMap(apps.sorted { $0.0 < $1.0 })) }
        if !deviceOf.isEmpty { m[string: "challengeDevices"] = .map(ValueMap(deviceOf.sorted { $0.0 < $1.0 })) }
        if !u.devices.isEmpty {
            m[string: "devices"] = .list(u.devices.map {
                .list([.bytes($0.tokenHash), .string($0.fingerprint), .int($0.expiresAt)])
            })
        }
        if !u.factors.isEmpty {
            m[string: "factors"] = .list(u.factors.map { f in
                var fm = ValueMap([("kind", .string(f.kind.rawValue)), ("sealed", .bytes(f.sealed)), ("confirmed", .bool(f.confirmed)),
                                   ("enrolledAt", .int(f.enrolledAt))])
                if let s = f.lastUsedStep { fm[string: "lastUsedStep"] = .int(s) }
                if let c = f.code {
                    fm[string: "code"] = .list([.bytes(c.sealed), c.challengeId.map(Value.string) ?? .null, .int(c.expiresAt), .int(Int64(c.sends))])
                }
                return .map(fm)
            })
        }
        let v = u.verification
        if v.failures > 0 { m[string: "failures"] = .int(Int64(v.failures)) }
        if let t = v.lockedOutUntil { m[string: "lockedOutUntil"] = .int(t) }
        if !v.attempts.isEmpty {
            m[string: "attempts"] = .map(ValueMap(v.attempts.keys.sorted().map { ($0, Value.int(Int64(v.attempts[$0]!))) }))
        }
        w.writeValue(.map(m))
    }

    /// The version-5 map of a user row (see `write(_:to:)`).
    static func readExtras(_ m: ValueMap, into u: inout UserState, _ r: BinaryReader) throws(BinaryDecodingError) {
        func bad(_ what: String) -> BinaryDecodingError { r.error(.invalidValue, "user MFA state: \(what)") }
        try readVerified(m[string: "verified"] ?? .null, into: &u, r)
        if let apps = m[string: "apps"] {
            guard case .map(let am) = apps else { throw bad("apps must be a map") }
            for (k, v) in am.entries {
                guard case .string(let id) = k, case .string(let app) = v else { throw bad("apps must map ids to strings") }
                if let i = u.pending.firstIndex(where: { $0.id == id }) { u.pending[i].app = app }
            }
        }
        if let devices = m[string: "challengeDevices"] {
            guard case .map(let dm) = devices else { throw bad("challengeDevices must be a map") }
            for (k, v) in dm.entries {
                guard case .string(let id) = k, case .string(let fp) = v else { throw bad("challengeDevices must map ids to strings") }
                if let i = u.pending.firstIndex(where: { $0.id == id }) { u.pending[i].device = fp }
            }
        }
        if let devices = m[string: "devices"] {
            guard case .list(let items) = devices else { throw bad("devices must be a list") }
            u.devices = try items.map { (item: Value) throws(BinaryDecodingError) -> TrustedDevice in
                guard case .list(let d) = item, d.count == 3, case .bytes(let hash) = d[0], case .string(let fp) = d[1],
                      case .int(let until) = d[2] else { throw bad("a device must be [token hash, fingerprint, expiry]") }
                return TrustedDevice(tokenHash: hash, fingerprint: fp, expiresAt: until)
            }
        }
        if let factors = m[string: "factors"] {
            guard case .list(let items) = factors else { throw bad("factors must be a list") }
            u.factors = try items.map { (item: Value) throws(BinaryDecodingError) -> Factor in
                guard case .map(let fm) = item, case .string(let k)? = fm[string: "kind"], let kind = Factor.Kind(rawValue: k),
                      case .bytes(let sealed)? = fm[string: "sealed"], case .bool(let confirmed)? = fm[string: "confirmed"],
                      case .int(let at)? = fm[string: "enrolledAt"] else { throw bad("a factor must be {kind, sealed, confirmed, enrolledAt}") }
                var f = Factor(kind: kind, sealed: sealed, confirmed: confirmed, enrolledAt: at)
                if case .int(let s)? = fm[string: "lastUsedStep"] { f.lastUsedStep = s }
                if let code = fm[string: "code"] {
                    guard case .list(let c) = code, c.count == 4, case .bytes(let sealed) = c[0], case .int(let until) = c[2],
                          case .int(let sends) = c[3] else { throw bad("a factor's code must be [sealed, challenge, expiry, sends]") }
                    let challenge: String?
                    switch c[1] {
                    case .string(let id): challenge = id
                    case .null: challenge = nil
                    default: throw bad("a factor's code names its challenge or null")
                    }
                    f.code = SentCode(sealed: sealed, challengeId: challenge, expiresAt: until, sends: Int(clamping: sends))
                }
                return f
            }
        }
        var v = VerificationCounters()
        if case .int(let n)? = m[string: "failures"] { v.failures = Int(clamping: n) }
        if case .int(let t)? = m[string: "lockedOutUntil"] { v.lockedOutUntil = t }
        if case .map(let am)? = m[string: "attempts"] {
            for (k, n) in am.entries {
                guard case .string(let id) = k, case .int(let count) = n else { throw bad("attempts must map ids to counts") }
                v.attempts[id] = Int(clamping: count)
            }
        }
        u.verification = v
    }

    static func readVerified(_ value: Value, into u: inout UserState, _ r: BinaryReader) throws(BinaryDecodingError) {
        switch value {
        case .int(let v): u.lastVerified = v
        case .list(let items):
            if items.count == 2, case .int(let v) = items[0], case .string(let id) = items[1] {
                u.lastVerified = v
                u.lastVerifiedChallenge = id
            } else {
                throw r.error(.invalidValue, "last verification must be [time, challenge id]")
            }
        default: break
        }
    }

    static func readUser(_ r: inout BinaryReader) throws(BinaryDecodingError) -> UserState {
        var methodSets = Set<[MFAMethod]>()
        return try readUser(&r, methodSets: &methodSets)
    }

    /// `methodSets`: method lists read so far. Pending challenges of one flow share their
    /// list, as the engine's do, instead of one allocation per user after a restore.
    static func readUser(_ r: inout BinaryReader, methodSets: inout Set<[MFAMethod]>) throws(BinaryDecodingError) -> UserState {
        var u = UserState(lastSeen: try r.readVarInt())
        if try r.readBool() {
            let lat = try r.readDouble(), lon = try r.readDouble(), acc = try r.readDouble(), t = try r.readVarInt()
            var city: String?, country: String?
            if case .string(let c) = try r.readValue() { city = c }
            if case .string(let c) = try r.readValue() { country = c }
            u.lastLocation = LastLocation(point: GeoPoint(latitude: lat, longitude: lon, accuracyRadiusKm: acc, time: t), city: city, country: country)
        }
        let n = try r.readCount(minimumItemSize: 4, "pending challenges")
        for _ in 0..<n {
            let flow = try r.readString(), id = try r.readString()
            let mc = try r.readCount(minimumItemSize: 1, "methods")
            var methods: [MFAMethod] = []
            for _ in 0..<mc {
                let s = try r.readString()
                guard let m = MFAMethod(rawValue: s) else { throw r.error(.invalidValue, "unknown MFA method '\(s)'") }
                methods.append(m)
            }
            methods = methodSets.insert(methods).memberAfterInsert
            u.pending.append(PendingChallenge(flow: flow, id: id, methods: methods, since: try r.readVarInt(), expiresAt: try r.readVarInt()))
        }
        let tail = try r.readValue()
        if case .map(let m) = tail { try readExtras(m, into: &u, r) } else { try readVerified(tail, into: &u, r) }
        return u
    }
}

/// Changes taken from a partition's state and not yet encoded (see `takeChangeSnapshot`).
public struct PartitionChangeSnapshot: Sendable {
    public let full: Bool
    public let metadata: [UInt8]
    /// Incremental, and the stored rows have grown enough that the writer should fold them
    /// into a new base after writing these (see `takeRebaseDecision`).
    public internal(set) var rebase = false
    /// Incremental: changed keys with their record, nil for a key swept since.
    var records: [(keyspace: String, key: String, record: KeyRecord?)] = []
    var users: [(id: String, user: UserState?)] = []
    /// Full: every keyspace's map and the user map.
    var maps: [(keyspace: String, map: ShardedMap<KeyRecord>)] = []
    var allUsers = ShardedMap<UserState>()

    init(full: Bool, metadata: [UInt8]) {
        self.full = full
        self.metadata = metadata
    }

    /// Keys and users in it.
    public var count: Int { full ? maps.reduce(allUsers.count) { $0 + $1.map.count } : records.count + users.count }

    /// What a checkpoint writes: a full snapshot as a new base of segments, an incremental
    /// one as per-key rows, sorted (so equal changes give equal writes).
    public func encoded() -> PartitionChanges { encoded(parallel: PartitionState.serial) }

    func encodedRows() -> PartitionChanges {
        var changes = PartitionChanges(full: full, metadata: metadata)
        for r in records.sorted(by: { ($0.keyspace, $0.key) < ($1.keyspace, $1.key) }) {
            if let record = r.record {
                var w = BinaryWriter()
                PartitionState.write(record, to: &w)
                changes.upserts.append((r.keyspace, r.key, w.bytes))
            } else {
                changes.deletes.append((r.keyspace, r.key))
            }
        }
        for u in users.sorted(by: { $0.id < $1.id }) {
            if let user = u.user {
                var w = BinaryWriter()
                PartitionState.write(user, to: &w)
                changes.userUpserts.append((u.id, w.bytes))
            } else {
                changes.userDeletes.append(u.id)
            }
        }
        return changes
    }
}

/// One incremental checkpoint's worth of changes (see CAMFAStore.CheckpointWrite).
public struct PartitionChanges: Sendable {
    public var full: Bool
    public var metadata: [UInt8]
    public var upserts: [(keyspace: String, key: String, value: [UInt8])] = []
    public var deletes: [(keyspace: String, key: String)] = []
    public var userUpserts: [(user: String, value: [UInt8])] = []
    public var userDeletes: [String] = []
    /// Full: the new base (see PartitionStateSegments.swift); the rows above apply on top.
    public var segments: [[UInt8]] = []

    public init(full: Bool, metadata: [UInt8]) {
        self.full = full
        self.metadata = metadata
    }
}

/// FNV-1a 64: a cheap checksum that catches truncation and flipped bytes in checkpoints.
struct FNV64 {
    var value: UInt64 = 0xCBF2_9CE4_8422_2325
    mutating func add<C: Collection<UInt8>>(_ bytes: C) {
        for b in bytes { value = (value ^ UInt64(b)) &* 0x100_0000_01B3 }
    }
}
