/// Policies and flows checked and compiled once at load; what the engine runs.
/// Immutable: a reload builds a new set and swaps it whole.
public struct PolicySet: Sendable {
    public let policies: [CompiledPolicy]
    public let flows: [CompiledFlow]
    /// Statistics grouped by their key expression: one map entry per key value holds all
    /// windows kept for that key, so a user with four statistics costs one entry.
    public let keyspaces: [Keyspace]
    public let options: EngineOptions

    public struct Keyspace: Sendable {
        /// The key expression's text, normalised; what a checkpoint matches on.
        public let keyText: String
        /// `policy/statistic/spec` per slot; a restored checkpoint keeps a slot only when
        /// its descriptor still exists, so an edited window starts empty instead of lying.
        public let slotDescriptors: [String]
        public let specs: [WindowSpec]
        public let longestWindow: Int64
        /// Where the keyspace's windows live when the input topic has several partitions.
        public let placement: KeyPlacement
    }

    /// The input topic is keyed by user, so a user's task sees all of the user's events;
    /// a key of any other kind (an IP, an app, a composite key, a risk population) has its
    /// events spread over every partition, so its windows live in the task of its own
    /// repartition partition (README "Repartitioning").
    public enum KeyPlacement: Sendable, Equatable {
        /// Keyed by the input key (`event.originalIdentity`): kept in the user's task.
        case inputKey
        /// Kept in the task of the key's repartition partition.
        case repartitioned
    }

    /// The key expression the input topic is partitioned by.
    public static let inputKeyText = "event.originalIdentity"

    /// Whether any statistic needs a repartition hop on a multi-partition input.
    public var needsRepartition: Bool { keyspaces.contains { $0.placement == .repartitioned } }

    public func policy(named name: String) -> CompiledPolicy? { policies.first { $0.name == name } }
    public func flow(named name: String) -> CompiledFlow? { flows.first { $0.name == name } }
}

public struct EngineOptions: Sendable, Hashable {
    /// Events older than the partition watermark minus this are rejected as late.
    public var allowedLateness: Int64 = 5 * 60_000
    /// How much event time passes between sweeps of idle keys (a punctuation).
    public var sweepInterval: Int64 = 60_000
    /// How long a user's last location and MFA history are kept without events.
    public var userRetention: Int64 = 30 * 86_400_000
    /// Live keys per keyspace of one partition; at the cap a new key evicts the earliest
    /// due (Engine, "Live-key caps").
    public var maxKeysPerKeyspace = 1_000_000
    /// Users of one partition; users holding a challenge are never evicted.
    public var maxUsers = 1_000_000
    public init() {}
}

// Final classes, not structs: the engine reads policies, statistics and flows out of
// arrays for every event, and copying a struct of this size retains each of its fields.

public final class CompiledStatistic: Sendable {
    public let name: String
    public let keyspace: Int
    public let slot: Int
    public let key: CompiledExpression
    public let value: CompiledExpression?
    public let filter: CompiledExpression?
    public let spec: WindowSpec
    /// Risk: the feature expressions (in `spec.risk.features` order) and where the
    /// partition's population is kept (one key, "", in a keyspace of its own, slot 0).
    public let features: [CompiledExpression]
    public let population: (keyspace: Int, spec: WindowSpec)?

    init(name: String, keyspace: Int, slot: Int, key: CompiledExpression, value: CompiledExpression?,
         filter: CompiledExpression?, spec: WindowSpec, features: [CompiledExpression] = [],
         population: (keyspace: Int, spec: WindowSpec)? = nil) {
        self.name = name
        self.keyspace = keyspace
        self.slot = slot
        self.key = key
        self.value = value
        self.filter = filter
        self.spec = spec
        self.features = features
        self.population = population
    }
}

public final class CompiledPolicy: Sendable {
    public let name: String
    public let inputs: [(name: String, type: CELType, expression: CompiledExpression)]
    public let inputSchema: ObjectSchema
    public let filter: CompiledExpression?
    public let statistics: [CompiledStatistic]
    public let statsSchema: ObjectSchema
    public let judgment: CompiledExpression
    public let returns: [(name: String, expression: CompiledExpression)]
    public let returnsSchema: ObjectSchema
    /// What a flow sees as `policies.<name>`.
    public let resultSchema: ObjectSchema
    /// Shared stand-ins for a policy without inputs, statistics or returns, or for
    /// statistics nobody judges: never written to, so every event can use them instead
    /// of allocating empty objects.
    let emptyInput: SlotObject
    let emptyStats: SlotObject
    let emptyReturns: SlotObject

    init(name: String, inputs: [(name: String, type: CELType, expression: CompiledExpression)], inputSchema: ObjectSchema,
         filter: CompiledExpression?, statistics: [CompiledStatistic], statsSchema: ObjectSchema, judgment: CompiledExpression,
         returns: [(name: String, expression: CompiledExpression)], returnsSchema: ObjectSchema, resultSchema: ObjectSchema) {
        self.name = name
        self.inputs = inputs
        self.inputSchema = inputSchema
        self.filter = filter
        self.statistics = statistics
        self.statsSchema = statsSchema
        self.judgment = judgment
        self.returns = returns
        self.returnsSchema = returnsSchema
        self.resultSchema = resultSchema
        emptyInput = SlotObject(schema: inputSchema, values: [])
        emptyStats = SlotObject(schema: statsSchema, values: [])
        emptyReturns = SlotObject(schema: returnsSchema, values: [])
    }
}

public final class CompiledFlow: Sendable {
    public let name: String
    public let trigger: FlowTrigger
    public let apps: AppScope
    public let policyIndexes: [Int]
    public let policiesSchema: ObjectSchema
    public let branches: [CompiledBranch]
    public let cooldown: Int64
    public let expiry: Int64
    public let failMode: FailMode
    public let rememberDevice: Int64?
    public let acr: String?

    init(name: String, trigger: FlowTrigger, apps: AppScope, policyIndexes: [Int], policiesSchema: ObjectSchema,
         branches: [CompiledBranch], cooldown: Int64, expiry: Int64, failMode: FailMode, rememberDevice: Int64?, acr: String?) {
        self.rememberDevice = rememberDevice
        self.acr = acr
        self.name = name
        self.trigger = trigger
        self.apps = apps
        self.policyIndexes = policyIndexes
        self.policiesSchema = policiesSchema
        self.branches = branches
        self.cooldown = cooldown
        self.expiry = expiry
        self.failMode = failMode
    }
}

public struct CompiledBranch: Sendable {
    public let when: CompiledExpression
    public let action: BranchAction
    public let returns: [(name: String, expression: CompiledExpression)]
}

/// Variable slots shared by every policy expression; flows use their own layout.
enum PolicySlot {
    static let event = 0, user = 1, input = 2, stats = 3, before = 4
    static let count = 5
}

enum FlowSlot {
    static let event = 0, user = 1, policies = 2
    static let count = 3
}

extension PolicySet {
    /// Checks and compiles a whole set; every problem is reported, not just the first.
    /// `failedPolicies`: names of policies whose files had errors before compilation; flows
    /// that use them are not checked further, so one mistake gives one error.
    public static func compile(
        policies defs: [PolicyDefinition], flows flowDefs: [FlowDefinition], options: EngineOptions = EngineOptions(),
        failedPolicies: Set<String> = [], earlierErrors: [PolicyError] = []
    ) throws(PolicyErrors) -> PolicySet {
        var errors: [PolicyError] = earlierErrors
        var failed = failedPolicies
        var keyspaceTexts: [String] = []
        var keyspaceSlots: [[String]] = []
        var keyspaceSpecs: [[WindowSpec]] = []
        var compiled: [CompiledPolicy] = []
        var seenPolicies: [String: FileLocation] = [:]

        func compileExpr(_ src: ExpressionSource, _ decls: Declarations, expecting: CELType? = nil) -> CompiledExpression? {
            do {
                return try Expression.compile(src.text, declarations: decls, expecting: expecting)
            } catch {
                errors.append(PolicyError(.expression, at: src.location(line: error.position.line, column: error.position.column), error.message))
                return nil
            }
        }

        for def in defs {
            if let first = seenPolicies[def.name] {
                errors.append(PolicyError(.duplicateName, at: def.location, "policy '\(def.name)' is already defined at \(first)"))
                continue
            }
            seenPolicies[def.name] = def.location
            let errorsAtPolicyStart = errors.count
            let inputSchema = ObjectSchema(name: "camfa.Input.\(def.name)", fields: def.inputs.map { ($0.name, $0.type) })
            var base = Declarations()
            _ = base.declare("event", .object(EngineSchemas.event))
            _ = base.declare("user", .object(EngineSchemas.user))
            _ = base.declare("input", .object(inputSchema))

            var inputs: [(name: String, type: CELType, expression: CompiledExpression)] = []
            for input in def.inputs {
                if let e = compileExpr(input.value, base) { inputs.append((input.name, input.type, e)) }
            }
            let filter = def.filter.flatMap { compileExpr($0, base, expecting: .bool) }

            var stats: [CompiledStatistic] = []
            var statFields: [(String, CELType)] = []
            for s in def.statistics {
                if statFields.contains(where: { $0.0 == s.name }) {
                    errors.append(PolicyError(.duplicateName, at: s.location, "statistic '\(s.name)' appears twice in policy '\(def.name)'"))
                    continue
                }
                let key = compileExpr(s.key, base)
                let value = s.value.flatMap { compileExpr($0, base) }
                let sfilter = s.filter.flatMap { compileExpr($0, base, expecting: .bool) }
                var features: [CompiledExpression] = []
                for f in s.features {
                    if let e = compileExpr(f.expression, base) { features.append(e) }
                }
                if s.window.aggregation == .risk && Self.normalise(s.key.text) != Self.inputKeyText {
                    // Its population is another task's; the user's own frequencies are the user's task's.
                    errors.append(PolicyError(.invalidValue, at: s.location, "statistic '\(s.name)': a risk statistic scores a user against the population: its key must be \(Self.inputKeyText)"))
                } else if s.window.aggregation == .risk && s.value != nil {
                    errors.append(PolicyError(.invalidValue, at: s.location, "statistic '\(s.name)': a risk statistic takes 'features', not 'value'"))
                } else if s.value == nil && s.window.aggregation != .count && s.window.aggregation != .risk {
                    errors.append(PolicyError(.missingKey, at: s.location, "statistic '\(s.name)': aggregation \(s.window.aggregation) needs a 'value' expression"))
                }
                let valueType = value?.resultType ?? .dyn
                statFields.append((s.name, Self.statisticType(s.window.aggregation, valueType: valueType)))
                guard let key else { continue }
                let keyText = Self.normalise(s.key.text)
                let ks: Int
                if let i = keyspaceTexts.firstIndex(of: keyText) { ks = i } else {
                    ks = keyspaceTexts.count
                    keyspaceTexts.append(keyText)
                    keyspaceSlots.append([])
                    keyspaceSpecs.append([])
                }
                var spec = s.window
                spec.allowedLateness = max(spec.allowedLateness, options.allowedLateness)
                let slot = keyspaceSlots[ks].count
                keyspaceSlots[ks].append("\(def.name)/\(s.name)/\(Self.fingerprint(spec, valueText: s.value?.text, filterText: s.filter?.text))")
                keyspaceSpecs[ks].append(spec)
                var population: (keyspace: Int, spec: WindowSpec)?
                if var risk = spec.risk {
                    guard features.count == s.features.count else { continue }
                    // The population's keyspace text is not an expression, so no key shares it.
                    risk.isPopulation = true
                    var pspec = spec
                    pspec.risk = risk
                    let text = "population of \(def.name)/\(s.name)"
                    let pks = keyspaceTexts.count
                    keyspaceTexts.append(text)
                    keyspaceSlots.append(["\(def.name)/\(s.name)/population;\(Self.fingerprint(pspec, valueText: nil, filterText: s.filter?.text))"])
                    keyspaceSpecs.append([pspec])
                    population = (pks, pspec)
                }
                stats.append(CompiledStatistic(name: s.name, keyspace: ks, slot: slot, key: key, value: value, filter: sfilter, spec: spec,
                                               features: features, population: population))
            }
            let errorsBeforeJudgment = errors.count
            let statsSchema = ObjectSchema(name: "camfa.Stats.\(def.name)", fields: statFields)
            var full = base
            _ = full.declare("stats", .object(statsSchema))
            _ = full.declare("before", .object(statsSchema))
            let judgment = compileExpr(def.judgment, full, expecting: .bool)
            var returns: [(name: String, expression: CompiledExpression)] = []
            for r in def.returns {
                if let e = compileExpr(r.expression, full) { returns.append((r.name, e)) }
            }
            let returnsSchema = ObjectSchema(name: "camfa.Returns.\(def.name)", fields: returns.map { ($0.name, $0.expression.resultType) })
            let resultSchema = ObjectSchema(name: "camfa.PolicyResult.\(def.name)", fields: [
                ("hit", .bool), ("applied", .bool), ("returns", .object(returnsSchema)),
                ("stats", .object(statsSchema)), ("before", .object(statsSchema)), ("input", .object(inputSchema)),
            ])
            guard let judgment, errors.count == errorsBeforeJudgment, errorsBeforeJudgment == errorsAtPolicyStart else {
                failed.insert(def.name)
                continue
            }
            // Statistics kept in another key's task see the event, never the user's state
            // (that task holds none): the expressions that decide what they count must not
            // read `user`. Compiled again without it, so the error points at the use.
            let repartitioned = def.statistics.filter { s in
                s.window.aggregation == .risk || Self.normalise(s.key.text) != Self.inputKeyText
            }
            if !repartitioned.isEmpty {
                var restricted = Declarations()
                _ = restricted.declare("event", .object(EngineSchemas.eventWithoutUserState))
                _ = restricted.declare("\u{1}user", .object(EngineSchemas.user))  // same slots, `user` unknown
                _ = restricted.declare("input", .object(inputSchema))
                let first = repartitioned[0]
                let why = "policy '\(def.name)': statistic '\(first.name)' is \(first.window.aggregation == .risk ? "scored against a population" : "keyed by \(Self.normalise(first.key.text))"), not only by the user, so it is counted in another task, which sees the event but not the user's state: `user` and `event.velocity` cannot be read"
                var sources: [(String, ExpressionSource)] = def.inputs.map { ("input '\($0.name)'", $0.value) }
                if let f = def.filter { sources.append(("the policy's filter", f)) }
                for st in repartitioned {
                    sources.append(("statistic '\(st.name)': key", st.key))
                    if let v = st.value { sources.append(("statistic '\(st.name)': value", v)) }
                    if let f = st.filter { sources.append(("statistic '\(st.name)': filter", f)) }
                    for f in st.features { sources.append(("statistic '\(st.name)': feature", f.expression)) }
                }
                for (what, src) in sources {
                    do { _ = try Expression.compile(src.text, declarations: restricted) } catch {
                        errors.append(PolicyError(.expression, at: src.location(line: error.position.line, column: error.position.column),
                                                  "\(why) in \(what)"))
                    }
                }
                if errors.count != errorsAtPolicyStart {
                    failed.insert(def.name)
                    continue
                }
            }
            compiled.append(CompiledPolicy(
                name: def.name, inputs: inputs, inputSchema: inputSchema, filter: filter, statistics: stats,
                statsSchema: statsSchema, judgment: judgment, returns: returns, returnsSchema: returnsSchema,
                resultSchema: resultSchema))
        }

        var flows: [CompiledFlow] = []
        var seenFlows: [String: FileLocation] = [:]
        for f in flowDefs {
            if let first = seenFlows[f.name] {
                errors.append(PolicyError(.duplicateName, at: f.location, "flow '\(f.name)' is already defined at \(first)"))
                continue
            }
            seenFlows[f.name] = f.location
            var indexes: [Int] = []
            var fields: [(String, CELType)] = []
            for p in f.policies {
                if let i = compiled.firstIndex(where: { $0.name == p }) {
                    indexes.append(i)
                    fields.append((p, .object(compiled[i].resultSchema)))
                } else if seenPolicies[p] == nil && !failed.contains(p) {
                    errors.append(PolicyError(.unknownPolicy, at: f.location, "flow '\(f.name)' uses policy '\(p)', which no policy file defines"))
                }
            }
            if f.policies.contains(where: { failed.contains($0) }) { continue }
            let policiesSchema = ObjectSchema(name: "camfa.Policies.\(f.name)", fields: fields)
            var decls = Declarations()
            _ = decls.declare("event", .object(EngineSchemas.event))
            _ = decls.declare("user", .object(EngineSchemas.user))
            _ = decls.declare("policies", .object(policiesSchema))
            var branches: [CompiledBranch] = []
            for b in f.branches {
                let when = compileExpr(b.when, decls, expecting: .bool)
                var returns: [(name: String, expression: CompiledExpression)] = []
                for r in b.returns {
                    if let e = compileExpr(r.expression, decls) { returns.append((r.name, e)) }
                }
                if let when { branches.append(CompiledBranch(when: when, action: b.action, returns: returns)) }
            }
            flows.append(CompiledFlow(
                name: f.name, trigger: f.trigger, apps: f.apps, policyIndexes: indexes, policiesSchema: policiesSchema,
                branches: branches, cooldown: f.cooldown, expiry: f.expiry, failMode: f.failMode, rememberDevice: f.rememberDevice, acr: f.acr))
        }
        if !errors.isEmpty { throw PolicyErrors(errors) }
        let keyspaces = keyspaceTexts.indices.map { i in
            Keyspace(keyText: keyspaceTexts[i], slotDescriptors: keyspaceSlots[i], specs: keyspaceSpecs[i],
                     longestWindow: keyspaceSpecs[i].map(\.length).max() ?? 0,
                     placement: keyspaceTexts[i] == inputKeyText ? .inputKey : .repartitioned)
        }
        return PolicySet(policies: compiled, flows: flows, keyspaces: keyspaces, options: options)
    }

    static func statisticType(_ aggregation: Aggregation, valueType: CELType) -> CELType {
        switch aggregation {
        case .count, .distinctCount: .int
        case .sum: .double
        // Empty windows have no average, minimum or maximum: null, so dyn.
        case .avg, .min, .max: .dyn
        case .first, .last, .previous: .dyn
        case .profile: .map(valueType == .dyn ? .dyn : valueType, .int)
        case .risk: .map(.string, .dyn)
        }
    }

    static func normalise(_ text: String) -> String {
        text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }).joined(separator: " ")
    }

    static func fingerprint(_ spec: WindowSpec, valueText: String?, filterText: String?) -> String {
        var parts = ["\(spec.aggregation)", "\(spec.length)", "\(spec.resolution)"]
        if spec.aggregation == .profile { parts.append("top\(spec.profileTop)cap\(spec.profileCapacity)") }
        if spec.aggregation == .distinctCount { parts.append("exact\(spec.distinctExactLimit)") }
        if let r = spec.risk {
            // Levels and smoothing only change how the state is read, not what it holds.
            parts.append("features[\(r.features.joined(separator: ","))]cap\(r.capacity)pop\(r.populationCapacity)half\(r.halfLife)")
        }
        parts.append(normalise(valueText ?? ""))
        parts.append(normalise(filterText ?? ""))
        return parts.joined(separator: ";")
    }
}
