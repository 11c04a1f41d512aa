/// Statistics keyed by something other than the user (README "Repartitioning").
///
/// The input topic is keyed by user, so one partition's task sees all of a user's events
/// and only a share of an IP's. On a multi-partition input, a statistic of another key
/// kind is counted in the task of its key's repartition partition instead: the user's task
/// turns the event into `RemoteOperation`s (what to count, under which key) when it reads
/// the event, the key's task applies them in the order they reach it
/// (`applyRepartitioned`), and the user's task decides with the `RemoteReading`s that come
/// back (`process(_:readings:)`). What a remote statistic counts may depend on the event
/// only, never on the user's state, which that task does not have: `PolicySet.compile`
/// refuses policies that would need it.

/// One statistic's update for one event, in the task of its key.
public struct RemoteOperation: Sendable, Equatable {
    /// The statistic: its policy's index in the set and its own in the policy.
    public struct ID: Hashable, Sendable, Comparable {
        public var policy: Int
        public var statistic: Int
        public init(policy: Int, statistic: Int) {
            self.policy = policy
            self.statistic = statistic
        }
        public static func < (a: ID, b: ID) -> Bool { (a.policy, a.statistic) < (b.policy, b.statistic) }
    }

    public enum Kind: UInt8, Sendable, Equatable {
        /// The statistic's own window under `key`: its values before and with the event.
        case window = 0
        /// A risk statistic's population (`key` ""): the priors of the event's features
        /// before the event, then the features added.
        case population = 1
    }

    public var id: ID
    public var kind: Kind
    /// The keyspace holding the windows; with `key`, where the operation is routed.
    public var keyspace: Int
    public var key: String
    /// The event's time.
    public var time: Int64
    /// Whether the event is counted (the policy's and the statistic's filters hold).
    public var passes: Bool
    /// Whether a flow of the event reads the statistic (its values are sent back).
    public var read: Bool
    /// window: the value counted.
    public var observed: Value
    /// population: the event's feature values (nil: the feature has none).
    public var features: [String?]

    public init(id: ID, kind: Kind, keyspace: Int, key: String, time: Int64, passes: Bool, read: Bool,
                observed: Value = .null, features: [String?] = []) {
        self.id = id
        self.kind = kind
        self.keyspace = keyspace
        self.key = key
        self.time = time
        self.passes = passes
        self.read = read
        self.observed = observed
        self.features = features
    }
}

/// What a key's task sends back for one operation.
public enum RemoteReading: Sendable, Equatable {
    case statistic(before: Value, current: Value)
    case priors([RiskScore.Prior?])
}

public typealias RemoteReadings = [RemoteOperation.ID: RemoteReading]

extension Engine {
    /// The operations an event sends to other keys' tasks, in the order the engine counts
    /// them (policy by policy, statistic by statistic). Pure: the event alone decides them.
    /// Call it only for an event `lateness` accepts: a refused event counts nowhere.
    public func repartitionOperations(_ event: UEBAEvent, trigger: FlowTrigger = .ueba, onlyFlow: String? = nil) -> [RemoteOperation] {
        guard !repartitionedPolicies.isEmpty else { return [] }
        let needed = neededPolicies(selectedFlows(appId: event.appId, trigger: trigger, onlyFlow: onlyFlow))
        // No velocity and no user: a remote statistic may read neither (PolicySet.compile).
        let eventValue = Value.object(EventObject(event, velocity: nil))
        var act = Activation(slotCount: max(PolicySlot.count, FlowSlot.count))
        var ops: [RemoteOperation] = []
        let t = event.requestDate
        for pi in repartitionedPolicies {
            let policy = policySet.policies[pi]
            let prepared = prepare(policy, eventValue: eventValue, userValue: .null, act: &act)
            let read = needed[pi] && prepared.applied
            for (si, stat) in policy.statistics.enumerated() {
                let remoteWindow = placements[stat.keyspace] == .repartitioned
                guard remoteWindow || stat.population != nil else { continue }
                guard case .success(let keyValue) = stat.key.evaluate(act), let key = Self.keyString(keyValue) else { continue }
                let (passes, observed) = Self.observe(stat, applied: prepared.applied, act)
                guard passes || read else { continue }
                let id = RemoteOperation.ID(policy: pi, statistic: si)
                if remoteWindow {
                    ops.append(RemoteOperation(id: id, kind: .window, keyspace: stat.keyspace, key: key, time: t, passes: passes,
                                               read: read, observed: observed))
                } else if let population = stat.population {
                    let features = stat.features.map { f -> String? in
                        if case .success(let v) = f.evaluate(act) { return Self.keyString(v) }
                        return nil
                    }
                    ops.append(RemoteOperation(id: id, kind: .population, keyspace: population.keyspace, key: "", time: t,
                                               passes: passes, read: read, features: features))
                }
            }
        }
        return ops
    }

    /// Applies one event's operations to a key task's state, in order, and returns each
    /// one's reading. The same operations in the same order give the same readings and
    /// state, whichever task applies them.
    public func applyRepartitioned(_ ops: [RemoteOperation], state: inout PartitionState) -> [RemoteReading] {
        guard let t = ops.map(\.time).max() else { return [] }
        advanceEventTime(to: t, &state)
        return ops.map { op in
            let stat = policySet.policies[op.id.policy].statistics[op.id.statistic]
            switch op.kind {
            case .population:
                guard let population = stat.population, let risk = stat.spec.risk else { return .priors([]) }
                let features = op.features.map { $0.map(ExactKey.init) }
                let priors = op.read ? Self.priors(features, population: population, at: op.time, risk: risk, in: &state) : []
                if op.passes { addToPopulation(features, population: population, at: op.time, in: &state) }
                return .priors(priors)
            case .window:
                let (b, c) = applyWindow(op, stat: stat, state: &state)
                return .statistic(before: b, current: c)
            }
        }
    }

    /// The window step of `Engine.run` for one statistic of one key (no risk: a risk
    /// statistic is kept with its user).
    private func applyWindow(_ op: RemoteOperation, stat: CompiledStatistic, state: inout PartitionState) -> (Value, Value) {
        let spec = stat.spec, t = op.time, passes = op.passes, read = op.read
        func step(_ window: inout WindowState) -> (Value, Value) {
            window.advance(to: t, spec: spec)
            let before = read ? window.current(spec: spec) : .null
            if passes { _ = window.add(time: t, value: op.observed, spec: spec) }
            return (before, passes && read ? window.current(spec: spec) : before)
        }
        var record = state.keyspaces[op.keyspace].index(forKey: op.key)
        if passes {
            if record == nil {
                makeRoom(space: op.keyspace, cap: policySet.options.maxKeysPerKeyspace, in: &state)
                state.keyspaces[op.keyspace][op.key] = KeyRecord(windows: ContiguousArray(repeating: nil, count: policySet.keyspaces[op.keyspace].specs.count))
                record = state.keyspaces[op.keyspace].index(forKey: op.key)
                schedule(op.key, space: op.keyspace, due: windowDue(end: t, spec: spec), in: &state)
            }
        } else if record.map({ state.keyspaces[op.keyspace][at: $0].windows[stat.slot] == nil }) ?? true {
            // Keys that only ever saw filtered-out events are not worth a map entry.
            let empty = WindowState().current(spec: spec)
            return (empty, empty)
        }
        let values = Self.withWindow(&state.keyspaces[op.keyspace][at: record!], slot: stat.slot, step)
        Self.markDirty(&state, keyspace: op.keyspace, record: record!, key: op.key)
        return values
    }
}
