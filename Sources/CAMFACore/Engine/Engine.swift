/// The policy engine: pure and deterministic. It sees an event, the event's coordinates
/// (for challenge ids) and the partition's state, never a clock, a socket or a file.
/// Same policy set, same events in the same order → identical decisions and state.
public struct Engine: Sendable {
    public let policySet: PolicySet
    /// Flows per trigger: app-specific ones by app id, and the global fallbacks.
    private let flowsByApp: [FlowTrigger: [String: [Int]]]
    private let globalFlows: [FlowTrigger: [Int]]
    /// Keys challenge ids; the same key on every instance of a group, so a partition that
    /// moves keeps issuing the ids a replay expects.
    public let challengeKey: ChallengeKey
    /// `policySet.keyspaces[i].placement`, read per statistic per event.
    let placements: [PolicySet.KeyPlacement]
    /// "keyspace text\0slot descriptor" → the statistic (or, for a population keyspace,
    /// the risk statistic it belongs to): how a key task resolves a wire operation.
    let statisticsByDescriptor: [String: RemoteOperation.ID]
    /// Policies with a statistic counted in key tasks (a repartitioned window or a risk
    /// population): the only ones `repartitionOperations` looks at, per event.
    let repartitionedPolicies: [Int]

    public init(policySet: PolicySet, challengeKey: ChallengeKey) {
        self.policySet = policySet
        self.challengeKey = challengeKey
        placements = policySet.keyspaces.map(\.placement)
        var byDescriptor: [String: RemoteOperation.ID] = [:]
        for (pi, policy) in policySet.policies.enumerated() {
            for (si, stat) in policy.statistics.enumerated() {
                let id = RemoteOperation.ID(policy: pi, statistic: si)
                let ks = policySet.keyspaces[stat.keyspace]
                byDescriptor["\(ks.keyText)\u{0}\(ks.slotDescriptors[stat.slot])"] = id
                if let population = stat.population {
                    let pks = policySet.keyspaces[population.keyspace]
                    byDescriptor["\(pks.keyText)\u{0}\(pks.slotDescriptors[0])"] = id
                }
            }
        }
        statisticsByDescriptor = byDescriptor
        let placed = placements
        repartitionedPolicies = policySet.policies.indices.filter { i in
            policySet.policies[i].statistics.contains { placed[$0.keyspace] == .repartitioned || $0.population != nil }
        }
        var byApp: [FlowTrigger: [String: [Int]]] = [:]
        var global: [FlowTrigger: [Int]] = [:]
        for (i, f) in policySet.flows.enumerated() {
            switch f.apps {
            case .global: global[f.trigger, default: []].append(i)
            case .apps(let apps):
                for a in apps { byApp[f.trigger, default: [:]][a, default: []].append(i) }
            }
        }
        flowsByApp = byApp
        globalFlows = global
    }

    /// The flows that judge an event of `appId` arriving by `trigger`: the app's own
    /// flows when it has any, the global ones otherwise.
    public func flows(for appId: String?, trigger: FlowTrigger) -> [Int] {
        if let appId, let own = flowsByApp[trigger]?[appId], !own.isEmpty { return own }
        return globalFlows[trigger] ?? []
    }

    /// The flows that decide an event: those of its app and trigger, or only `onlyFlow`.
    func selectedFlows(appId: String?, trigger: FlowTrigger, onlyFlow: String?) -> [Int] {
        let selected = flows(for: appId, trigger: trigger)
        guard let onlyFlow else { return selected }
        return selected.filter { policySet.flows[$0].name == onlyFlow }
    }

    /// Per policy: whether a selected flow judges with it (so its statistics are read).
    func neededPolicies(_ selected: [Int]) -> [Bool] {
        var needed = Array(repeating: false, count: policySet.policies.count)
        for f in selected { for p in policySet.flows[f].policyIndexes { needed[p] = true } }
        return needed
    }

    /// Why an event at `t` is refused as late against `watermark`, if it is.
    public func lateness(of t: Int64, watermark: Int64) -> RejectReason? {
        guard watermark != Int64.min, t < watermark - policySet.options.allowedLateness else { return nil }
        return RejectReason(code: .late, message: "event time \(t) is more than \(policySet.options.allowedLateness) ms behind the partition watermark \(watermark)")
    }

    /// Moves the task's event time to `t`: the watermark, and the sweep when one is due.
    func advanceEventTime(to t: Int64, _ state: inout PartitionState) {
        // Only the engine adds to `dirtyKeys`, so all of them empty before it starts means
        // `takeChanges()` ran (or nothing was marked): marks from before are stale.
        if state.dirtyKeys.allSatisfy(\.isEmpty) { state.changeEpoch &+= 1 }
        if t > state.watermark { state.watermark = t }
        if state.watermark >= state.nextSweep {
            sweep(&state)
            state.nextSweep = state.watermark + policySet.options.sweepInterval
        }
    }

    /// Processes one event: updates statistics and user state, and decides for every flow
    /// that covers it. `coordinates` identifies the event's position in its source (for
    /// Kafka `topic/partition/offset`) and makes challenge ids deterministic.
    /// - Parameter readings: on a repartitioned topology (README "Repartitioning"), the
    ///   values of the statistics kept in other keys' tasks, from `applyRepartitioned`;
    ///   nil keeps every statistic in `state`.
    public func process(
        _ event: UEBAEvent, coordinates: String, trigger: FlowTrigger = .ueba, onlyFlow: String? = nil,
        readings: RemoteReadings? = nil, state: inout PartitionState
    ) -> EvaluationOutcome {
        let t = event.requestDate
        if let late = lateness(of: t, watermark: state.watermark) { return .rejected(late) }
        advanceEventTime(to: t, &state)

        // User state first: velocity compares against the previous located event.
        // The user is moved out of the map and back by index: one hash instead of two,
        // and no second reference to make changes to its arrays copy them.
        var user = UserState(lastSeen: t)
        let userIndex = state.users.index(forKey: event.originalIdentity)
        if let userIndex { swap(&user, &state.users[at: userIndex]) }
        let wasPinned = user.isPinned
        user.lastSeen = max(user.lastSeen, t)
        var velocity: GeoVelocityValue?
        if let g = event.geo, let lat = g.latitude, let lon = g.longitude {
            let here = GeoPoint(latitude: lat, longitude: lon, accuracyRadiusKm: g.accuracyRadius ?? 0, time: t)
            if let last = user.lastLocation {
                velocity = GeoVelocityValue(velocity: GeoVelocity.between(last.point, here),
                                            previousCity: last.city, previousCountry: last.country)
            }
            if user.lastLocation.map({ $0.point.time <= t }) ?? true {
                user.lastLocation = LastLocation(point: here, city: event.city, country: event.country)
            }
        }

        let eventValue = Value.object(EventObject(event, velocity: velocity))
        let userValue = Value.object(UserObject(event, user))

        let selected = selectedFlows(appId: event.appId, trigger: trigger, onlyFlow: onlyFlow)
        let policies = policySet.policies
        let needed = neededPolicies(selected)

        // One activation serves every policy and flow of the event; `run` and `decide`
        // reset the slots they fill, so each still starts from the same variables.
        var act = Activation(slotCount: max(PolicySlot.count, FlowSlot.count))
        // Every policy's statistics see every event that passes its filter, whichever
        // flows cover the event: "≥ 5 apps from one IP" must count all apps.
        var results: [PolicyRun?] = Array(repeating: nil, count: policies.count)
        for i in policies.indices {
            results[i] = run(policies[i], index: i, event: event, eventValue: eventValue, userValue: userValue, act: &act,
                             judge: needed[i], readings: readings, state: &state)
        }

        var decisions: [Decision] = []
        decisions.reserveCapacity(selected.count)
        for f in selected {
            decisions.append(decide(policySet.flows[f], results: results, eventValue: eventValue, userValue: userValue, event: event,
                                    time: t, coordinates: coordinates, user: &user, act: &act))
        }
        let isPinned = user.isPinned
        if let userIndex {
            swap(&user, &state.users[at: userIndex])
        } else {
            makeRoom(space: state.keyspaces.count, cap: policySet.options.maxUsers, in: &state)
            state.users[event.originalIdentity] = user
            schedule(event.originalIdentity, space: state.keyspaces.count, due: userDue(user), in: &state)
        }
        // After the insertion: counting the locked users (makeRoom) must see this one.
        state.pinChanged(from: wasPinned, to: isPinned)
        state.recordChange(user: event.originalIdentity)
        return .decided(decisions)
    }

    struct PolicyRun {
        var applied: Bool
        var hit: Bool
        var error: String?
        /// Filled only for a hit: explanations are all that reads them.
        var readings: [StatisticReading]
        var result: SlotObject?
        var returns: ValueMap
    }

    /// A policy's inputs and filter, evaluated into `act`.
    struct Prepared {
        var input: SlotObject
        var applied: Bool
        var firstError: String?
    }

    func prepare(_ policy: CompiledPolicy, eventValue: Value, userValue: Value, act: inout Activation) -> Prepared {
        for i in act.values.indices { act[i] = .null }
        act[PolicySlot.event] = eventValue
        act[PolicySlot.user] = userValue
        var input = policy.emptyInput
        var firstError: String?
        if !policy.inputs.isEmpty {
            var inputValues = [Value?](repeating: nil, count: policy.inputSchema.fieldNames.count)
            for (i, inp) in policy.inputs.enumerated() {
                let r = inp.expression.evaluate(act)
                switch r {
                case .success(let v): inputValues[i] = v
                case .failure(let e): firstError = firstError ?? "\(policy.name): input '\(inp.name)': \(e.message)"
                }
                input = SlotObject(schema: policy.inputSchema, values: inputValues)
                act[PolicySlot.input] = .object(input)
            }
        }
        act[PolicySlot.input] = .object(input)
        var applied = true
        if let filter = policy.filter {
            switch filter.evaluate(act) {
            case .success(.bool(let b)): applied = b
            case .success: applied = false
            case .failure(let e):
                applied = false
                firstError = firstError ?? "\(policy.name): filter: \(e.message)"
            }
        }
        return Prepared(input: input, applied: applied, firstError: firstError)
    }

    /// Whether the event counts in `stat` (the policy applies and the statistic's filter
    /// holds) and the value it adds.
    @inline(__always)
    static func observe(_ stat: CompiledStatistic, applied: Bool, _ act: Activation) -> (passes: Bool, observed: Value) {
        var passes = applied
        if passes, let f = stat.filter {
            if case .success(.bool(let b)) = f.evaluate(act) { passes = b } else { passes = false }
        }
        var observed: Value = .null
        if passes, let v = stat.value {
            switch v.evaluate(act) {
            case .success(let x): observed = x
            case .failure: passes = false  // no value, nothing to aggregate
            }
        }
        return (passes, observed)
    }

    private func run(
        _ policy: CompiledPolicy, index policyIndex: Int, event: UEBAEvent, eventValue: Value, userValue: Value, act: inout Activation,
        judge: Bool, readings: RemoteReadings?, state: inout PartitionState
    ) -> PolicyRun {
        let prepared = prepare(policy, eventValue: eventValue, userValue: userValue, act: &act)
        let input = prepared.input, applied = prepared.applied
        var firstError = prepared.firstError
        let t = event.requestDate
        // `before`, `stats` and the keys only matter to a judgment and its result object.
        let statCount = policy.statistics.count
        let fresh = judge && statCount > 0
        var beforeValues = [Value?](repeating: nil, count: fresh ? policy.statsSchema.fieldNames.count : 0)
        var currentValues = beforeValues
        // Statistics sharing a keyspace share its key expression, and the activation does
        // not change during this loop, so the key is evaluated once per run of them.
        var lastKeyspace = -1
        var lastKey: String?
        var markedDirty = false
        // Where the key's record sits in its keyspace, once found: statistics sharing the
        // key (`apps` and `failures` by IP) then reach it without hashing the key again.
        var record: ShardedMap<KeyRecord>.Index?
        for (i, stat) in policy.statistics.enumerated() {
            let sameKey = stat.keyspace == lastKeyspace
            if !sameKey {
                lastKeyspace = stat.keyspace
                if case .success(let keyValue) = stat.key.evaluate(act) { lastKey = Self.keyString(keyValue) } else { lastKey = nil }
                markedDirty = false
                record = nil
            }
            guard let key = lastKey else { continue }
            let (passes, observed) = Self.observe(stat, applied: applied, act)
            let spec = stat.spec
            let slot = stat.slot
            var b: Value, c: Value
            let read = judge && applied
            if let readings, placements[stat.keyspace] == .repartitioned {
                // Kept in the key's own task, which already counted this event.
                if passes || read, case .statistic(let rb, let rc)? = readings[RemoteOperation.ID(policy: policyIndex, statistic: i)] {
                    (b, c) = (rb, rc)
                } else {
                    (b, c) = (.null, .null)
                }
                if judge {
                    beforeValues[i] = b
                    currentValues[i] = c
                }
                continue
            }
            // Mutate the window where it lives: copying it out and back would make every
            // event copy its buffers (copy-on-write with two references).
            // Reading a statistic can cost more than updating it (a profile builds a map),
            // so it is read only when a judgment of this event can use it.
            // Risk: the event's feature values and their standing in the population before
            // this event; the score itself comes from the key's window in `step`.
            var features: [ExactKey?] = []
            var priors: [RiskScore.Prior?] = []
            if let population = stat.population, let risk = spec.risk, passes || read {
                features = stat.features.map { f in
                    if case .success(let v) = f.evaluate(act), let k = Self.keyString(v) { return ExactKey(k) }
                    return nil
                }
                if read {
                    if let readings {
                        if case .priors(let p)? = readings[RemoteOperation.ID(policy: policyIndex, statistic: i)] { priors = p }
                    } else {
                        priors = Self.priors(features, population: population, at: t, risk: risk, in: &state)
                    }
                }
            }
            func step(_ window: inout WindowState) -> (Value, Value) {
                window.advance(to: t, spec: spec)
                if let risk = spec.risk {
                    let v = read ? RiskScore.value(RiskScore.assess(features, user: window.frequencies, priors: priors, at: t, spec: risk)) : .null
                    if passes { _ = window.add(time: t, features: features, spec: spec) }
                    return (v, v)
                }
                let before = read ? window.current(spec: spec) : .null
                if passes { _ = window.add(time: t, value: observed, spec: spec) }
                return (before, passes && read ? window.current(spec: spec) : before)
            }
            if passes || read, record == nil { record = state.keyspaces[stat.keyspace].index(forKey: key) }
            if passes {
                if record == nil {
                    makeRoom(space: stat.keyspace, cap: policySet.options.maxKeysPerKeyspace, in: &state)
                    let slots = policySet.keyspaces[stat.keyspace].specs.count
                    state.keyspaces[stat.keyspace][key] = KeyRecord(windows: ContiguousArray(repeating: nil, count: slots))
                    record = state.keyspaces[stat.keyspace].index(forKey: key)
                    // The window about to be filled ends at `t` at least: no earlier than
                    // this is the key due, and a later due is found when this one comes.
                    schedule(key, space: stat.keyspace, due: windowDue(end: t, spec: spec), in: &state)
                }
                (b, c) = Self.withWindow(&state.keyspaces[stat.keyspace][at: record!], slot: slot, step)
                if !(sameKey && markedDirty) { Self.markDirty(&state, keyspace: stat.keyspace, record: record!, key: key) }
                markedDirty = true
            } else if !read {
                b = .null
                c = .null
            } else if let r = record, state.keyspaces[stat.keyspace][at: r].windows[slot] != nil {
                (b, c) = Self.withWindow(&state.keyspaces[stat.keyspace][at: r], slot: slot, step)
                if !(sameKey && markedDirty) { Self.markDirty(&state, keyspace: stat.keyspace, record: r, key: key) }
                markedDirty = true
            } else if let risk = spec.risk {
                b = RiskScore.value(RiskScore.assess(features, user: nil, priors: priors, at: t, spec: risk))
                c = b
            } else {
                // Keys that only ever saw filtered-out events are not worth a map entry.
                b = WindowState().current(spec: spec)
                c = b
            }
            if passes, readings == nil, let population = stat.population { addToPopulation(features, population: population, at: t, in: &state) }
            if judge {
                beforeValues[i] = b
                currentValues[i] = c
            }
        }
        guard judge else {
            return PolicyRun(applied: applied, hit: false, error: firstError, readings: [], result: nil, returns: ValueMap())
        }
        let before = fresh ? SlotObject(schema: policy.statsSchema, values: beforeValues) : policy.emptyStats
        let current = fresh ? SlotObject(schema: policy.statsSchema, values: currentValues) : policy.emptyStats
        act[PolicySlot.stats] = .object(current)
        act[PolicySlot.before] = .object(before)
        var hit = false
        if applied {
            switch policy.judgment.evaluate(act) {
            case .success(.bool(let b)): hit = b
            case .success(let other): firstError = firstError ?? "\(policy.name): judgment gave \(other), not a bool"
            case .failure(let e): firstError = firstError ?? "\(policy.name): judgment: \(e.message)"
            }
        }
        var returnsObject = policy.emptyReturns
        if !policy.returns.isEmpty {
            var returnsValues = [Value?](repeating: nil, count: policy.returnsSchema.fieldNames.count)
            for (i, r) in policy.returns.enumerated() {
                switch r.expression.evaluate(act) {
                case .success(let v): returnsValues[i] = v
                case .failure(let e): firstError = firstError ?? "\(policy.name): returns.\(r.name): \(e.message)"
                }
            }
            returnsObject = SlotObject(schema: policy.returnsSchema, values: returnsValues)
        }
        var readings: [StatisticReading] = []
        var returns = ValueMap()
        if hit {
            // Keys again, with the activation as the statistics loop saw it: cheaper than
            // keeping every judged policy's keys for the few that hit.
            act[PolicySlot.stats] = .null
            act[PolicySlot.before] = .null
            readings.reserveCapacity(statCount)
            for (i, stat) in policy.statistics.enumerated() {
                // A statistic whose key did not evaluate has no value in `before` and reads as null.
                var key: String?
                if before.values[i] != nil, case .success(let k) = stat.key.evaluate(act) { key = Self.keyString(k) }
                readings.append(StatisticReading(name: stat.name, key: key,
                                                 before: before.values[i] ?? .null, current: current.values[i] ?? .null))
            }
            returns.reserveCapacity(policy.returns.count)
            for (i, r) in policy.returns.enumerated() {
                if let v = returnsObject.values[i] { returns[string: r.name] = v }
            }
        }
        let result = SlotObject(schema: policy.resultSchema, values: [
            .bool(hit), .bool(applied), .object(returnsObject), .object(current), .object(before), .object(input),
        ])
        return PolicyRun(applied: applied, hit: hit, error: firstError, readings: readings, result: result, returns: returns)
    }

    private func decide(
        _ flow: CompiledFlow, results: [PolicyRun?], eventValue: Value, userValue: Value, event: UEBAEvent, time: Int64,
        coordinates: String, user: inout UserState, act: inout Activation
    ) -> Decision {
        var policyValues = [Value?](repeating: nil, count: flow.policiesSchema.fieldNames.count)
        var errors: [String] = []
        var fired: [PolicyExplanation] = []
        for (i, p) in flow.policyIndexes.enumerated() {
            guard let run = results[p] else { continue }
            policyValues[i] = run.result.map(Value.object)
            if let e = run.error { errors.append(e) }
            if run.hit {
                fired.append(PolicyExplanation(policy: policySet.policies[p].name, judgment: policySet.policies[p].judgment.source,
                                               statistics: run.readings, returns: run.returns))
            }
        }
        for i in act.values.indices { act[i] = .null }
        act[FlowSlot.event] = eventValue
        act[FlowSlot.user] = userValue
        act[FlowSlot.policies] = .object(SlotObject(schema: flow.policiesSchema, values: policyValues))

        var matched: Int?
        for (i, b) in flow.branches.enumerated() {
            switch b.when.evaluate(act) {
            case .success(.bool(true)): matched = i
            case .success: break
            case .failure(let e): errors.append("\(flow.name): branch \(i + 1): \(e.message)")
            }
            if matched != nil { break }
        }
        var decision = Decision(
            flow: flow.name, action: .allow, methods: [], branch: matched, suppressedByCooldown: false, challengeId: nil,
            expiresAt: nil, failMode: flow.failMode, firedPolicies: fired, errors: errors, returns: ValueMap())
        guard let matched else { return decision }
        let branch = flow.branches[matched]
        for r in branch.returns {
            switch r.expression.evaluate(act) {
            case .success(let v): decision.returns[string: r.name] = v
            case .failure(let e): decision.errors.append("\(flow.name): returns.\(r.name): \(e.message)")
            }
        }
        switch branch.action {
        case .allow: decision.action = .allow
        case .deny: decision.action = .deny
        case .mfa(let methods):
            decision.action = .mfa
            decision.methods = methods
            // An expired challenge never suppresses: it is a held lock, and the new one
            // (which replaces it) is what the user can answer.
            if let pending = user.pending.first(where: {
                $0.flow == flow.name && $0.expiresAt > time && time.subtractingReportingOverflow($0.since).partialValue < flow.cooldown
            }) {
                decision.suppressedByCooldown = true
                decision.challengeId = pending.id
                decision.expiresAt = pending.expiresAt
            } else {
                let id = ChallengeID.make(coordinates: coordinates, flow: flow.name, key: challengeKey)
                var challenge = PendingChallenge(flow: flow.name, id: id, methods: methods, since: time, expiresAt: Self.later(time, by: flow.expiry))
                challenge.app = event.appId
                // Only a flow that remembers devices needs it: a hash per challenge otherwise.
                if flow.rememberDevice != nil { challenge.device = Self.deviceFingerprint(event) }
                user.pending.removeAll { $0.flow == flow.name }
                user.pending.append(challenge)
                decision.challengeId = id
                decision.expiresAt = challenge.expiresAt
            }
        }
        return decision
    }

    // MARK: - Sweep (a punctuation on event time)
    //
    // Every `sweepInterval` of event time the sweep drops keys whose windows can no longer
    // hold anything and users idle past their retention. It looks only at the keys due by
    // then, through `PartitionState.sweepQueue`: sweeping every key each time stalled the
    // poll thread for the whole state (seconds at a million users) and, with event time
    // running fast (a replay), did nothing else. Whether a key goes depends only on its
    // records and the sweep's watermark, never on where the queue holds it, so a queue
    // rebuilt after a restore sweeps exactly as the uninterrupted one does.

    /// Event time is cut in sweep buckets of one interval; a sweep at watermark `w` takes
    /// every bucket before `w`'s, so everything due in them is due before `w`.
    @inline(__always)
    private func sweepBucket(_ t: Int64) -> Int64 {
        let i = max(1, policySet.options.sweepInterval)
        let q = t / i
        return t % i < 0 ? q &- 1 : q
    }

    /// The last bucket the previous sweep took (it ran at `nextSweep - sweepInterval`).
    private func sweptThrough(_ state: PartitionState) -> Int64 {
        state.nextSweep == .min ? .min : sweepBucket(state.nextSweep) &- 2
    }

    /// `t + d`, saturating: times near the ends of Int64 mean "never" and "always".
    @inline(__always)
    public static func later(_ t: Int64, by d: Int64) -> Int64 {
        let (r, o) = t.addingReportingOverflow(d)
        return o ? (d > 0 ? .max : .min) : r
    }

    /// When a window last advanced to `end` is certainly empty, and no event the engine
    /// still accepts (within `allowedLateness` of the watermark) can land in it: its
    /// newest bucket has left even the window of the latest late event.
    @inline(__always)
    func windowDue(end: Int64, spec: WindowSpec) -> Int64 {
        let (b, o1) = spec.bucket(end).addingReportingOverflow(spec.bucketSpan)
        let (due, o2) = b.multipliedReportingOverflow(by: spec.resolution)
        return o1 || o2 ? .max : Self.later(due, by: policySet.options.allowedLateness)  // overflow: keep the key
    }

    /// When every window of the record is due. Windows only move forward, so this only
    /// ever grows.
    private func recordDue(_ record: KeyRecord, specs: [WindowSpec]) -> Int64 {
        var due = Int64.min
        for slot in record.windows.indices {
            guard let w = record.windows[slot], w.end != .min else { continue }
            due = max(due, windowDue(end: w.end, spec: specs[slot]))
        }
        return due
    }

    /// When the user has been idle past the retention, late events included (pending
    /// challenges are checked at the sweep: they can be cleared, so they do not schedule).
    private func userDue(_ user: UserState) -> Int64 {
        Self.later(Self.later(user.lastSeen, by: policySet.options.userRetention), by: policySet.options.allowedLateness &+ 1)
    }

    /// Queues `key` of `space` (users: `keyspaces.count`) for the sweep of the bucket its
    /// `due` falls in, or the next sweep's when that bucket has been swept already.
    func schedule(_ key: String, space: Int, due: Int64, in state: inout PartitionState) {
        guard state.sweepQueue != nil else { return }  // the next sweep rebuilds it
        state.sweepQueue![space][queueBucket(due: due, state), default: []].append(key)
    }

    /// The bucket a key due at `due` is queued in: its own, or the next sweep's.
    private func queueBucket(due: Int64, _ state: PartitionState) -> Int64 {
        max(sweepBucket(due), sweptThrough(state) &+ 1)
    }

    /// Builds the sweep queue when there is none (after a restore) or it was computed with
    /// other options (after a reload).
    private func ensureSweepQueue(_ state: inout PartitionState) {
        guard state.sweepQueue == nil || state.sweepQueueOptions != policySet.options else { return }
        state.sweepQueue = Array(repeating: [:], count: state.keyspaces.count + 1)
        state.sweepQueueOptions = policySet.options
        for ks in state.keyspaces.indices {
            let specs = policySet.keyspaces[ks].specs
            for (key, record) in state.keyspaces[ks] { schedule(key, space: ks, due: recordDue(record, specs: specs), in: &state) }
        }
        for (id, user) in state.users { schedule(id, space: state.keyspaces.count, due: userDue(user), in: &state) }
    }

    func sweep(_ state: inout PartitionState) {
        let w = state.watermark
        ensureSweepQueue(&state)
        let previous = sweptThrough(state)
        let through = sweepBucket(w) - 1
        for space in state.keyspaces.indices {
            let specs = policySet.keyspaces[space].specs
            for key in takeDue(space: space, after: previous, through: through, from: &state) {
                guard let r = state.keyspaces[space].index(forKey: key) else { continue }
                let due = recordDue(state.keyspaces[space][at: r], specs: specs)
                if sweepBucket(due) > through {
                    schedule(key, space: space, due: due, in: &state)
                } else {
                    state.keyspaces[space].remove(at: r)
                    state.recordChange(keyspace: space, key: key)
                }
            }
        }
        let users = state.keyspaces.count
        for id in takeDue(space: users, after: previous, through: through, from: &state) {
            guard let u = state.users[id] else { continue }
            let due = userDue(u)
            if sweepBucket(due) > through {
                schedule(id, space: users, due: due, in: &state)
            } else if !u.isPinned {
                state.users.removeValue(forKey: id)
                state.recordChange(user: id)
            } else if u.pending.allSatisfy({ $0.expiresAt <= Self.later(w, by: -policySet.options.allowedLateness) }) {
                // Locked: an expired challenge holds until a verified result or a release
                // (README "Security model"), so idleness never unlocks. Looked at again a
                // retention later rather than every sweep.
                state.sweepQueue![users][sweepBucket(Self.later(w, by: policySet.options.userRetention)), default: []].append(id)
            } else {
                // Idle but holding a challenge a late event could still see: looked at every
                // sweep until it expires or clears.
                state.sweepQueue![users][through + 1, default: []].append(id)
            }
        }
    }

    /// Removes from the queue of `space` the buckets after `previous` through `through`,
    /// and returns their keys.
    private func takeDue(space: Int, after previous: Int64, through: Int64, from state: inout PartitionState) -> [String] {
        var buckets: [Int64] = []
        if previous != .min, through &- previous <= Int64(state.sweepQueue![space].count) {
            for b in (previous + 1)...through where state.sweepQueue![space][b] != nil { buckets.append(b) }
        } else {
            buckets = state.sweepQueue![space].keys.filter { $0 <= through }
        }
        var keys: [String] = []
        for b in buckets { keys += state.sweepQueue![space].removeValue(forKey: b) ?? [] }
        return keys
    }

    // MARK: - Live-key caps
    //
    // A producer chooses the keys (user ids, IPs, apps), so without a cap a flood of
    // distinct ones grows a partition's state until the host runs out of memory. At the
    // cap (`EngineOptions.maxKeysPerKeyspace` per keyspace, `maxUsers` for users, both
    // per partition) a new key first evicts the keys that would be swept first: the
    // earliest due, i.e. whose windows empty soonest (least recently updated), ties broken
    // by key bytes so that a restored state evicts exactly as the uninterrupted one. An
    // attacker's own keys are the most recently updated, so a flood evicts them last.
    // Users holding a challenge (pending or expired) are never evicted: that would unlock
    // them. They may exceed the cap; the metric shows it. Eviction goes a batch at a time
    // (`evictionBatch`) so that finding the earliest keys, a scan of the queue's first
    // buckets, is paid once per batch and not per event.

    /// Keys evicted per trip to the cap: a 64th of it, at least one.
    static func evictionBatch(cap: Int) -> Int { max(1, cap / 64) }

    /// Makes room for one new key in `space` (`keyspaces.count`: users) when it holds `cap`.
    func makeRoom(space: Int, cap: Int, in state: inout PartitionState) {
        let users = state.keyspaces.count
        let count = space == users ? state.users.count : state.keyspaces[space].count
        guard count >= cap else { return }
        var evictable = count
        if space == users {
            if state.pinnedUsers == nil { state.pinnedUsers = state.users.reduce(0) { $0 + ($1.value.isPinned ? 1 : 0) } }
            evictable -= state.pinnedUsers!
        }
        let wanted = min(evictable, count - cap + Self.evictionBatch(cap: cap))
        guard wanted > 0 else { return }  // every user holds a challenge: over the cap
        ensureSweepQueue(&state)
        // Buckets in order, including those a stale entry is moved to on the way.
        var order = state.sweepQueue![space].keys.sorted()
        var next = 0
        var candidates: [(due: Int64, key: String, bucket: Int64)] = []
        while candidates.count < wanted, next < order.count {
            let bucket = order[next]
            next += 1
            guard let keys = state.sweepQueue![space].removeValue(forKey: bucket) else { continue }
            var kept: [String] = []
            for key in keys {
                let due: Int64
                if space == users {
                    guard let u = state.users[key] else { continue }  // already gone
                    guard !u.isPinned else { kept.append(key); continue }  // a lock or a factor stays
                    due = userDue(u)
                } else {
                    guard let r = state.keyspaces[space][key] else { continue }
                    due = recordDue(r, specs: policySet.keyspaces[space].specs)
                }
                guard sweepBucket(due) > bucket else { candidates.append((due, key, bucket)); continue }
                // A stale entry: the key was updated since it was queued.
                let later = queueBucket(due: due, state)
                if state.sweepQueue![space][later] == nil {
                    var lo = next, hi = order.count
                    while lo < hi { let mid = (lo + hi) / 2; if order[mid] < later { lo = mid + 1 } else { hi = mid } }
                    order.insert(later, at: lo)
                }
                state.sweepQueue![space][later, default: []].append(key)
            }
            if !kept.isEmpty { state.sweepQueue![space][bucket, default: []] += kept }
        }
        // Every key due no later than the last bucket taken is a candidate, and every key
        // not taken is due later: the smallest candidates are the smallest of all.
        candidates.sort { $0.due != $1.due ? $0.due < $1.due : ExactKey.less($0.key, $1.key) }
        for (i, c) in candidates.enumerated() {
            if i < wanted {
                if space == users {
                    state.users.removeValue(forKey: c.key)
                    state.recordChange(user: c.key)
                } else {
                    state.keyspaces[space].removeValue(forKey: c.key)
                    state.recordChange(keyspace: space, key: c.key)
                }
                state.evictions[space] += 1
            } else {
                state.sweepQueue![space][c.bucket, default: []].append(c.key)
            }
        }
    }

    // MARK: - Risk population
    //
    // The partition's population of a risk statistic lives under the key "" of a keyspace
    // of its own (PolicySet.compile), so that checkpoints, dumps, restores and the sweep
    // treat it as any other window. It is read and written in place: a copy alive while
    // it is updated would make every event copy its hundreds of values.

    static func priors(_ features: [ExactKey?], population: (keyspace: Int, spec: WindowSpec), at t: Int64,
                               risk: RiskSpec, in state: inout PartitionState) -> [RiskScore.Prior?] {
        guard let r = state.keyspaces[population.keyspace].index(forKey: "") else {
            return RiskScore.priors(features, population: nil, at: t, spec: risk)
        }
        return RiskScore.priors(features, population: state.keyspaces[population.keyspace][at: r].windows[0]?.frequencies, at: t, spec: risk)
    }

    func addToPopulation(_ features: [ExactKey?], population: (keyspace: Int, spec: WindowSpec), at t: Int64,
                                 in state: inout PartitionState) {
        let ks = population.keyspace
        let r: ShardedMap<KeyRecord>.Index
        if let found = state.keyspaces[ks].index(forKey: "") {
            r = found
        } else {
            state.keyspaces[ks][""] = KeyRecord(windows: [WindowState()])
            r = state.keyspaces[ks].index(forKey: "")!
            // Queued once, as every key is: the sweep finds it due later while it is used
            // and queues it again then (a queue entry per login would pile up).
            schedule("", space: ks, due: windowDue(end: t, spec: population.spec), in: &state)
        }
        if state.keyspaces[ks][at: r].windows[0] == nil { state.keyspaces[ks][at: r].windows[0] = WindowState() }
        state.keyspaces[ks][at: r].windows[0]!.advance(to: t, spec: population.spec)
        _ = state.keyspaces[ks][at: r].windows[0]!.add(time: t, features: features, spec: population.spec)
        Self.markDirty(&state, keyspace: ks, record: r, key: "")
    }

    /// Puts the key in `dirtyKeys` unless its record says it is already there.
    @inline(__always)
    static func markDirty(_ state: inout PartitionState, keyspace: Int, record: ShardedMap<KeyRecord>.Index, key: String) {
        // While a full checkpoint is pending nothing is collected, so there is no mark to keep.
        if !state.needsFullCheckpoint {
            let epoch = state.changeEpoch
            if state.keyspaces[keyspace][at: record].markedEpoch == epoch { return }
            state.keyspaces[keyspace][at: record].markedEpoch = epoch
        }
        state.recordChange(keyspace: keyspace, key: key)
    }

    static func withWindow(_ record: inout KeyRecord, slot: Int, _ body: (inout WindowState) -> (Value, Value)) -> (Value, Value) {
        if record.windows[slot] == nil { record.windows[slot] = WindowState() }
        return body(&record.windows[slot]!)
    }

    /// The map key a statistic is kept under. Lists make composite keys (`[event.ip, event.appId]`).
    static func keyString(_ v: Value) -> String? {
        switch v {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .uint(let u): return String(u)
        case .bool(let b): return b ? "true" : "false"
        case .double(let d): return String(d)
        case .list(let items):
            var parts: [String] = []
            for item in items {
                guard let s = keyString(item) else { return nil }
                parts.append(s)
            }
            return parts.joined(separator: "\u{1F}")
        default: return nil
        }
    }
}

/// The secret that keys challenge ids (`security.secretFile`, README "Security model").
/// Ids stay deterministic, the same input at the same offset gives the same id so that
/// subscribers can drop duplicates, but only with the key: an unkeyed hash of
/// topic/partition/offset/flow let anyone who can count offsets guess a live challenge's id.
public struct ChallengeKey: Sendable {
    let mac: HMACSHA256

    /// `secret`: the operator's secret; the id key is derived from it for this one purpose,
    /// so the same secret can also key the record MAC without the two ever coinciding.
    public init(secret: [UInt8]) {
        mac = HMACSHA256(key: HMACSHA256(key: secret).authenticate(Array("camfa challenge id v1".utf8)))
    }
}

public enum ChallengeID {
    /// A UUIDv8 (RFC 9562) whose 122 free bits are HMAC-SHA256(key, coordinates NUL flow).
    public static func make(coordinates: String, flow: String, key: ChallengeKey) -> String {
        let d = key.mac.authenticate(Array(coordinates.utf8) + [0] + Array(flow.utf8))
        var b = Array(d.prefix(16))
        b[6] = (b[6] & 0x0F) | 0x80  // version 8
        b[8] = (b[8] & 0x3F) | 0x80  // RFC 4122 variant
        let hex = b.map { byte -> String in
            let s = String(byte, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined()
        let c = Array(hex)
        return "\(String(c[0..<8]))-\(String(c[8..<12]))-\(String(c[12..<16]))-\(String(c[16..<20]))-\(String(c[20..<32]))"
    }
}
