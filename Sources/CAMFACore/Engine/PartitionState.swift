/// Everything the engine remembers for one input partition (Kafka Streams' partition-owned
/// state): the statistics' windows per key, and per user the last location and MFA state.
/// The daemon keeps one per assigned partition and checkpoints it with the partition's
/// next offset; nothing in it depends on a wall clock.
public struct PartitionState: Sendable {
    /// The highest event time seen; lateness is measured against it.
    public internal(set) var watermark: Int64 = Int64.min
    var nextSweep: Int64 = Int64.min
    /// A key task's (README "Repartitioning"): per user partition, the events whose
    /// operations it applied, so a request sent again is not counted twice. Empty in a
    /// user's task.
    public internal(set) var appliedOrigins: [Int32: AppliedOrigins] = [:]
    /// Parallel to `PolicySet.keyspaces`. Sharded: see `ShardedMap` for the stalls that avoids.
    var keyspaces: [ShardedMap<KeyRecord>]
    var users = ShardedMap<UserState>()
    /// What the checkpoint needs from the layout: keyspace texts and slot descriptors.
    let layout: [PolicySet.Keyspace]
    /// Keys and users changed since the last `takeChanges()`; a key in here that is no
    /// longer in the map was swept and must be deleted from the checkpoint.
    var dirtyKeys: [Set<ExactKey>]
    var dirtyUsers: Set<ExactKey> = []
    /// While a full checkpoint is pending, changes are only counted, not collected: the full
    /// snapshot writes every key anyway, and a set of every key of a partition being built
    /// grows by rehashing all it holds, a poll-thread stall of its own.
    var changesUntilFull = 0
    /// Advances whenever the engine finds every `dirtyKeys` set empty (after
    /// `takeChanges()`): a record whose `markedEpoch` equals it is already in `dirtyKeys`,
    /// so the engine skips hashing its key into the set again for every event.
    var changeEpoch: UInt64 = 1
    /// The next change set must replace the stored state whole (new partition, or a
    /// restore that dropped statistics because the policies changed).
    var needsFullCheckpoint = true
    /// Rows (changed keys and users, deletions included) written by incremental checkpoints
    /// since the last full one: they sit on top of the stored base (see `decideRebase`).
    var rowsSinceBase = 0
    /// Tests lower it to see rebases in small states.
    public var rebaseMinimumRows = PartitionState.minimumRowsBeforeRebase
    /// The sweep's schedule (`Engine.sweep`): per keyspace, then users as the last entry,
    /// sweep bucket → the keys to look at when that bucket is swept. Every live key is in
    /// exactly one bucket, no later than the one its records fall due in. Derived from the
    /// records alone, so it is never checkpointed: nil after a restore, and the next sweep
    /// rebuilds it (also when a reload changed `sweepQueueOptions`).
    var sweepQueue: [[Int64: [String]]]?
    /// The sweep interval, retention and lateness the queue's buckets were computed with.
    var sweepQueueOptions: EngineOptions?
    /// Keys and users in the sweep queue (nil while it is not built): every live key once.
    var sweepQueueCount: Int? { sweepQueue?.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } } }

    mutating func recordChange(keyspace: Int, key: String) {
        if needsFullCheckpoint { changesUntilFull += 1 } else { dirtyKeys[keyspace].insert(ExactKey(key)) }
    }

    /// Keeps `pinnedUsers` when a user's challenges or factors change.
    mutating func pinChanged(from wasPinned: Bool, to isPinned: Bool) {
        if wasPinned != isPinned, let n = pinnedUsers { pinnedUsers = n + (isPinned ? 1 : -1) }
    }

    mutating func recordChange(user id: String) {
        if needsFullCheckpoint { changesUntilFull += 1 } else { dirtyUsers.insert(ExactKey(id)) }
    }

    /// Keys evicted at the live-key cap since the last `takeEvictions()`, per keyspace and
    /// users last. Telemetry, not state: never checkpointed.
    var evictions: [Int]
    /// Pinned users (`UserState.isPinned`), whom the cap never evicts; nil until counted
    /// (after a restore), then kept by the engine. Derived, not checkpointed.
    var pinnedUsers: Int?

    public init(policySet: PolicySet) {
        keyspaces = Array(repeating: ShardedMap(), count: policySet.keyspaces.count)
        evictions = Array(repeating: 0, count: policySet.keyspaces.count + 1)
        dirtyKeys = Array(repeating: [], count: policySet.keyspaces.count)
        layout = policySet.keyspaces
    }

    /// The evictions counted since the last call, per keyspace and users last, and resets
    /// them.
    public mutating func takeEvictions() -> [Int] {
        defer { for i in evictions.indices { evictions[i] = 0 } }
        return evictions
    }

    /// Live keys per keyspace plus users: what the memory figures are reported against.
    public var liveKeyCount: Int { keyspaces.reduce(0) { $0 + $1.count } + users.count }
    public var userCount: Int { users.count }
}

struct KeyRecord: Sendable, Equatable {
    /// One per statistic slot of the keyspace; nil until an event touches it.
    var windows: ContiguousArray<WindowState?>
    /// The `PartitionState.changeEpoch` in which the key was last put in `dirtyKeys`;
    /// bookkeeping, not state: never checkpointed, and equality ignores it.
    var markedEpoch: UInt64 = 0

    init(windows: ContiguousArray<WindowState?>) { self.windows = windows }

    static func == (a: KeyRecord, b: KeyRecord) -> Bool { a.windows == b.windows }
}

/// Per user: what every event touches inline, the MFA state behind one reference. Most
/// users have no challenge pending and none verified, and the user map's slots (about two
/// per user, the map's capacity being a power of two) are the bulk of this state: moving
/// the MFA part out makes a slot 80 bytes instead of 112.
struct UserState: Sendable, Equatable {
    var lastSeen: Int64
    var lastLocation: LastLocation?
    /// nil while the user has no MFA state (no pending challenge, nothing verified).
    private var mfa: MFARecord?

    init(lastSeen: Int64) { self.lastSeen = lastSeen }

    // Setting the empty value on a user without MFA state stores nothing: every event
    // clears expired challenges, and that must not allocate a record.
    var pending: [PendingChallenge] {
        get { mfa?.pending ?? [] }
        set { if mfa != nil || !newValue.isEmpty { updateMFA { $0.pending = newValue } } }
    }
    var lastVerified: Int64? {
        get { mfa?.lastVerified }
        set { if mfa != nil || newValue != nil { updateMFA { $0.lastVerified = newValue } } }
    }
    /// The challenge the last verified result cleared: a redelivered copy of that result
    /// is accepted again without effect (MFAResults.swift).
    var lastVerifiedChallenge: String? {
        get { mfa?.lastVerifiedChallenge }
        set { if mfa != nil || newValue != nil { updateMFA { $0.lastVerifiedChallenge = newValue } } }
    }
    /// Enrolled factors, one per kind (Factors.swift).
    var factors: [Factor] {
        get { mfa?.factors ?? [] }
        set { if mfa != nil || !newValue.isEmpty { updateMFA { $0.factors = newValue } } }
    }
    /// Codes checked by camfa and refused since the last accepted one (Factors.swift).
    var verification: VerificationCounters {
        get { mfa?.verification ?? VerificationCounters() }
        set { if mfa != nil || newValue != VerificationCounters() { updateMFA { $0.verification = newValue } } }
    }

    /// Devices trusted after a verified challenge of a `rememberDevice` flow.
    var devices: [TrustedDevice] {
        get { mfa?.devices ?? [] }
        set { if mfa != nil || !newValue.isEmpty { updateMFA { $0.devices = newValue } } }
    }

    /// Never swept for idleness nor evicted at the cap: a held challenge is a lock
    /// (README "Security model"), and an enrolled factor is the user's, not a statistic.
    var isPinned: Bool { !pending.isEmpty || !factors.isEmpty }

    /// Copy-on-write: a checkpoint snapshot may share the record.
    private mutating func updateMFA(_ change: (MFARecord) -> Void) {
        if mfa == nil { mfa = MFARecord() } else if !isKnownUniquelyReferenced(&mfa!) { mfa = mfa!.copy() }
        change(mfa!)
        if mfa!.isEmpty { mfa = nil }
    }

    static func == (a: UserState, b: UserState) -> Bool {
        a.lastSeen == b.lastSeen && a.lastLocation == b.lastLocation && a.pending == b.pending
            && a.lastVerified == b.lastVerified && a.lastVerifiedChallenge == b.lastVerifiedChallenge
            && a.factors == b.factors && a.verification == b.verification && a.devices == b.devices
    }
}

/// Mutated only through `UserState`, which copies it unless uniquely referenced, as the
/// standard collections do; that makes sharing it across threads safe.
private final class MFARecord: @unchecked Sendable {
    var pending: [PendingChallenge] = []
    var lastVerified: Int64?
    var lastVerifiedChallenge: String?
    var factors: [Factor] = []
    var verification = VerificationCounters()
    var devices: [TrustedDevice] = []

    var isEmpty: Bool {
        pending.isEmpty && lastVerified == nil && lastVerifiedChallenge == nil && factors.isEmpty && verification == VerificationCounters()
            && devices.isEmpty
    }

    func copy() -> MFARecord {
        let c = MFARecord()
        c.pending = pending
        c.lastVerified = lastVerified
        c.lastVerifiedChallenge = lastVerifiedChallenge
        c.factors = factors
        c.verification = verification
        c.devices = devices
        return c
    }
}

struct LastLocation: Sendable, Equatable {
    var point: GeoPoint
    var city: String?
    var country: String?
}

/// A challenge the engine issued and that no MFA result has cleared yet.
public struct PendingChallenge: Sendable, Equatable {
    public var flow: String
    public var id: String
    public var methods: [MFAMethod]
    public var since: Int64
    public var expiresAt: Int64
    /// The challenged event's app: the audience of the mfaToken that answers it.
    public var app: String?
    /// The challenged event's device fingerprint (`Engine.deviceFingerprint`): the device a
    /// `rememberDevice` flow trusts once the challenge is verified.
    public var device: String?

    public init(flow: String, id: String, methods: [MFAMethod], since: Int64, expiresAt: Int64) {
        self.flow = flow
        self.id = id
        self.methods = methods
        self.since = since
        self.expiresAt = expiresAt
    }
}

extension PartitionState {
    /// The user's unexpired pending challenges as of event time `time`.
    public func pendingChallenges(user: String, at time: Int64) -> [PendingChallenge] {
        users[user]?.pending.filter { $0.expiresAt > time } ?? []
    }

    /// Challenges that expired unanswered by `time`: each keeps the user locked until a
    /// verified result for a later challenge or an explicit release.
    public func expiredChallenges(user: String, at time: Int64) -> [PendingChallenge] {
        users[user]?.pending.filter { $0.expiresAt <= time } ?? []
    }
}

/// A key task's record of one user partition's requests (`Engine.apply`).
public struct AppliedOrigins: Sendable, Equatable {
    /// Every origin offset below it is decided for good in its user task.
    public var floor: Int64 = 0
    /// The origin offsets at or above `floor` whose requests were applied.
    public var offsets: Set<Int64> = []
    public init(floor: Int64 = 0, offsets: Set<Int64> = []) {
        self.floor = floor
        self.offsets = offsets
    }
}
