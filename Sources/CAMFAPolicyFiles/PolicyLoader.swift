import CAMFACore
import Foundation
import Yams

/// Reads a policy directory: every `*.yaml`/`*.yml` file below it holds policies
/// (`policy: NAME`) and flows (`flow: NAME`), one per YAML document. Every error carries
/// `file:line:col`, and all of them are reported together.
public enum PolicyLoader {
    public struct Loaded: Sendable {
        public var policies: [PolicyDefinition]
        public var flows: [FlowDefinition]
        public var files: [String]
    }

    /// Loads and compiles a directory (or a single file) into a ready policy set.
    /// Parse errors and compile errors are reported together, so one run shows every problem.
    public static func loadPolicySet(at path: String, options: EngineOptions = EngineOptions()) throws(PolicyErrors) -> PolicySet {
        let (loaded, errors, failed) = try parse(at: path)
        return try PolicySet.compile(policies: loaded.policies, flows: loaded.flows, options: options,
                                     failedPolicies: failed, earlierErrors: errors)
    }

    /// One file's text, compiled alone (the fuzzer's entry, and a check for a text that is
    /// not on disk). `file` names it in the errors.
    public static func loadPolicySet(text: String, file: String, options: EngineOptions = EngineOptions()) throws(PolicyErrors) -> PolicySet {
        var result = Loaded(policies: [], flows: [], files: [file])
        var parser = DocumentParser(file: file, text: text)
        parser.parse(into: &result)
        return try PolicySet.compile(policies: result.policies, flows: result.flows, options: options,
                                     failedPolicies: parser.failedPolicies, earlierErrors: parser.errors)
    }

    public static func load(at path: String) throws(PolicyErrors) -> Loaded {
        let (loaded, errors, _) = try parse(at: path)
        if !errors.isEmpty { throw PolicyErrors(errors) }
        return loaded
    }

    static func parse(at path: String) throws(PolicyErrors) -> (Loaded, [PolicyError], Set<String>) {
        let files = policyFiles(at: path)
        if files.isEmpty {
            throw PolicyErrors([PolicyError(.noFiles, at: FileLocation(file: path, line: 1, column: 1),
                                            "no policy files (*.yaml, *.yml) found")])
        }
        var result = Loaded(policies: [], flows: [], files: files)
        var errors: [PolicyError] = []
        var failed: Set<String> = []
        for file in files {
            guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
                errors.append(PolicyError(.invalidValue, at: FileLocation(file: file, line: 1, column: 1), "cannot read the file as UTF-8 text"))
                continue
            }
            var parser = DocumentParser(file: file, text: text)
            parser.parse(into: &result)
            errors += parser.errors
            failed.formUnion(parser.failedPolicies)
        }
        return (result, errors, failed)
    }

    static func policyFiles(at path: String) -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { return [] }
        if !isDir.boolValue { return [path] }
        guard let e = FileManager.default.enumerator(atPath: path) else { return [] }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            if rel.hasSuffix(".yaml") || rel.hasSuffix(".yml") {
                let full = (path as NSString).appendingPathComponent(rel)
                // Fixtures and other data beside the policies are not policies.
                if rel.split(separator: "/").contains(where: { $0.hasPrefix(".") || $0 == "fixtures" }) { continue }
                out.append(full)
            }
        }
        return out.sorted()
    }
}

/// Durations in policy files: `500ms`, `45s`, `10m`, `2h`, `30d`, and sums like `1h30m`.
public enum DurationText {
    public static func milliseconds(_ text: String) -> Int64? {
        var total: Int64 = 0
        var number: Int64 = 0
        var haveDigits = false
        var chars = Array(text.trimmingCharacters(in: .whitespaces))
        if chars.isEmpty { return nil }
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if let d = c.wholeNumberValue, c.isASCII {
                let (m, o1) = number.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(Int64(d))
                if o1 || o2 { return nil }
                number = s
                haveDigits = true
                i += 1
                continue
            }
            guard haveDigits else { return nil }
            var unit = String(c)
            if c == "m", i + 1 < chars.count, chars[i + 1] == "s" { unit = "ms"; i += 1 }
            let factor: Int64
            switch unit {
            case "ms": factor = 1
            case "s": factor = 1_000
            case "m": factor = 60_000
            case "h": factor = 3_600_000
            case "d": factor = 86_400_000
            default: return nil
            }
            let (v, o) = number.multipliedReportingOverflow(by: factor)
            let (sum, o2) = total.addingReportingOverflow(v)
            if o || o2 { return nil }
            total = sum
            number = 0
            haveDigits = false
            i += 1
        }
        chars.removeAll()
        return haveDigits ? nil : total
    }
}

/// Turns YAML nodes into definitions, collecting errors instead of stopping at the first.
struct DocumentParser {
    let file: String
    let lines: [Substring]
    let text: String
    var errors: [PolicyError] = []
    var failedPolicies: Set<String> = []

    init(file: String, text: String) {
        self.file = file
        self.text = text
        self.lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    }

    func loc(_ node: Node) -> FileLocation {
        FileLocation(file: file, line: node.mark?.line ?? 1, column: node.mark?.column ?? 1)
    }

    mutating func fail(_ code: PolicyError.Code, _ node: Node, _ message: String) {
        errors.append(PolicyError(code, at: loc(node), message))
    }

    mutating func parse(into result: inout PolicyLoader.Loaded) {
        var documents: [Node] = []
        do {
            // YamlSequence keeps a mid-stream error instead of throwing it.
            var sequence = try Yams.compose_all(yaml: text)
            while let doc = sequence.next() { documents.append(doc) }
            if let e = sequence.error { throw e }
        } catch let e as YamlError {
            errors.append(Self.yamlError(e, file: file))
            return
        } catch {
            errors.append(PolicyError(.yamlSyntax, at: FileLocation(file: file, line: 1, column: 1), "\(error)"))
            return
        }
        for doc in documents {
            guard let map = doc.mapping else {
                fail(.invalidValue, doc, "a policy file document must be a mapping with 'policy:' or 'flow:'")
                continue
            }
            if map["policy"] != nil {
                let before = errors.count
                let p = policy(doc, map)
                if let p, errors.count == before { result.policies.append(p) } else if let n = map["policy"]?.scalar?.string {
                    failedPolicies.insert(n)
                }
            } else if map["flow"] != nil {
                if let f = flow(doc, map) { result.flows.append(f) }
            } else {
                fail(.missingKey, doc, "document has neither 'policy:' nor 'flow:'")
            }
        }
    }

    static func yamlError(_ e: YamlError, file: String) -> PolicyError {
        switch e {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            let ctx = context.map { "\($0.text) " } ?? ""
            return PolicyError(.yamlSyntax, at: FileLocation(file: file, line: mark.line, column: mark.column), "YAML: \(ctx)\(problem)")
        case .composer(let context, let problem, let mark, _):
            let ctx = context.map { "\($0.text) " } ?? ""
            return PolicyError(.yamlSyntax, at: FileLocation(file: file, line: mark.line, column: mark.column), "YAML: \(ctx)\(problem)")
        case .duplicatedKeysInMapping(let duplicates, let context):
            return PolicyError(.duplicateName, at: FileLocation(file: file, line: context.mark.line, column: context.mark.column),
                               "YAML: key '\(duplicates.joined(separator: "', '"))' appears twice in one mapping")
        default:
            return PolicyError(.yamlSyntax, at: FileLocation(file: file, line: 1, column: 1), "YAML: \(e)")
        }
    }

    // MARK: - Field helpers

    mutating func checkKeys(_ map: Node.Mapping, allowed: Set<String>, what: String) {
        for (k, _) in map {
            guard let name = k.string else { fail(.invalidValue, k, "\(what): keys must be strings"); continue }
            if !allowed.contains(name) {
                fail(.unknownKey, k, "\(what): unknown key '\(name)' (allowed: \(allowed.sorted().joined(separator: ", ")))")
            }
        }
    }

    mutating func string(_ node: Node?, _ what: String, required parent: Node? = nil) -> String? {
        guard let node else {
            if let parent { fail(.missingKey, parent, "missing '\(what)'") }
            return nil
        }
        guard let s = node.scalar?.string else { fail(.invalidValue, node, "'\(what)' must be a scalar"); return nil }
        return s
    }

    mutating func name(_ node: Node?, _ what: String, parent: Node) -> String? {
        guard let s = string(node, what, required: parent) else { return nil }
        let ok = !s.isEmpty && s.unicodeScalars.enumerated().allSatisfy { i, c in
            c == "_" || (c.isASCII && (CharacterSet.letters.contains(c) || (i > 0 && CharacterSet.decimalDigits.contains(c))))
        }
        if !ok {
            // Names are read in expressions (`policies.NAME`), so they must be identifiers.
            fail(.invalidValue, node!, "'\(what)' must be an identifier (letters, digits, _; not starting with a digit), got '\(s)'")
            return nil
        }
        return s
    }

    mutating func expression(_ node: Node?, _ what: String, required parent: Node? = nil) -> ExpressionSource? {
        guard let node else {
            if let parent { fail(.missingKey, parent, "missing '\(what)'") }
            return nil
        }
        guard let scalar = node.scalar else { fail(.invalidValue, node, "'\(what)' must be an expression (a string)"); return nil }
        let markLine = node.mark?.line ?? 1, markColumn = node.mark?.column ?? 1
        switch scalar.style {
        case .literal, .folded:
            // The text starts on the first non-blank line after the indicator.
            var line = markLine + 1
            while line - 1 < lines.count, lines[line - 1].allSatisfy({ $0 == " " }) { line += 1 }
            let indent = line - 1 < lines.count ? lines[line - 1].prefix(while: { $0 == " " }).count : 0
            return ExpressionSource(scalar.string, at: FileLocation(file: file, line: line, column: indent + 1),
                                    continuationColumn: indent + 1)
        case .singleQuoted, .doubleQuoted:
            return ExpressionSource(scalar.string, at: FileLocation(file: file, line: markLine, column: markColumn + 1))
        default:
            return ExpressionSource(scalar.string, at: FileLocation(file: file, line: markLine, column: markColumn))
        }
    }

    mutating func duration(_ node: Node?, _ what: String, default def: Int64? = nil, parent: Node? = nil) -> Int64? {
        guard let node else {
            if def == nil, let parent { fail(.missingKey, parent, "missing '\(what)'") }
            return def
        }
        guard let s = node.scalar?.string, let ms = DurationText.milliseconds(s), ms > 0 else {
            fail(.invalidValue, node, "'\(what)' must be a positive duration like 500ms, 45s, 10m, 2h, 30d")
            return def
        }
        return ms
    }

    mutating func positiveInt(_ node: Node?, _ what: String, default def: Int) -> Int {
        guard let node else { return def }
        guard let s = node.scalar?.string, let v = Int(s), v > 0 else {
            fail(.invalidValue, node, "'\(what)' must be a positive integer")
            return def
        }
        return v
    }

    mutating func number(_ node: Node?, _ what: String, default def: Double) -> Double {
        guard let node else { return def }
        guard let s = node.scalar?.string, let v = Double(s), v.isFinite else {
            fail(.invalidValue, node, "'\(what)' must be a number")
            return def
        }
        return v
    }

    mutating func positiveNumber(_ node: Node?, _ what: String, default def: Double) -> Double {
        let v = number(node, what, default: def)
        if v <= 0, let node { fail(.invalidValue, node, "'\(what)' must be positive"); return def }
        return v
    }

    mutating func returnsList(_ node: Node?, what: String) -> [(name: String, expression: ExpressionSource)] {
        guard let node else { return [] }
        guard let map = node.mapping else { fail(.invalidValue, node, "'\(what)' must map names to expressions"); return [] }
        var out: [(name: String, expression: ExpressionSource)] = []
        for (k, v) in map {
            guard let n = name(k, "\(what) name", parent: node) else { continue }
            if out.contains(where: { $0.name == n }) { fail(.duplicateName, k, "'\(what).\(n)' appears twice"); continue }
            if let e = expression(v, "\(what).\(n)") { out.append((n, e)) }
        }
        return out
    }

    static func celType(_ s: String) -> CELType? {
        switch s {
        case "string": .string
        case "int": .int
        case "double", "number": .double
        case "bool": .bool
        case "list": .list(.dyn)
        case "map": .map(.string, .dyn)
        case "dyn", "any": .dyn
        case "timestamp": .timestamp
        case "duration": .duration
        default: nil
        }
    }

    // MARK: - Policy

    mutating func policy(_ doc: Node, _ map: Node.Mapping) -> PolicyDefinition? {
        checkKeys(map, allowed: ["policy", "description", "inputs", "filter", "statistics", "judgment", "returns"], what: "policy")
        guard let pname = name(map["policy"], "policy", parent: doc) else { return nil }
        var inputs: [InputDefinition] = []
        if let inNode = map["inputs"] {
            if let inMap = inNode.mapping {
                for (k, v) in inMap {
                    guard let n = name(k, "input name", parent: inNode) else { continue }
                    if let s = v.scalar {
                        _ = s
                        if let e = expression(v, "inputs.\(n)") {
                            inputs.append(InputDefinition(name: n, type: .dyn, value: e, location: loc(k)))
                        }
                    } else if let vm = v.mapping {
                        checkKeys(vm, allowed: ["type", "value"], what: "inputs.\(n)")
                        var type: CELType = .dyn
                        if let t = string(vm["type"], "inputs.\(n).type") {
                            if let ct = Self.celType(t) { type = ct } else {
                                fail(.invalidValue, vm["type"]!, "inputs.\(n).type: unknown type '\(t)' (string, int, double, bool, list, map, timestamp, duration, dyn)")
                            }
                        }
                        if let e = expression(vm["value"], "inputs.\(n).value", required: v) {
                            inputs.append(InputDefinition(name: n, type: type, value: e, location: loc(k)))
                        }
                    } else {
                        fail(.invalidValue, v, "inputs.\(n) must be an expression or {type, value}")
                    }
                }
            } else {
                fail(.invalidValue, inNode, "'inputs' must map names to expressions or {type, value}")
            }
        }
        let filter = expression(map["filter"], "filter")
        var stats: [StatisticDefinition] = []
        if let sNode = map["statistics"] {
            if let seq = sNode.sequence {
                for item in seq { if let s = statistic(item) { stats.append(s) } }
            } else {
                fail(.invalidValue, sNode, "'statistics' must be a list")
            }
        }
        let judgment = expression(map["judgment"], "judgment", required: doc)
        let returns = returnsList(map["returns"], what: "returns")
        let description = map["description"]?.scalar?.string
        guard let judgment else { return nil }
        return PolicyDefinition(name: pname, location: loc(doc), description: description, inputs: inputs, filter: filter,
                                statistics: stats, judgment: judgment, returns: returns)
    }

    static let aggregations: [String: Aggregation] = [
        "count": .count, "sum": .sum, "min": .min, "max": .max, "avg": .avg, "distinctCount": .distinctCount,
        "first": .first, "last": .last, "previous": .previous, "profile": .profile, "risk": .risk,
    ]

    mutating func statistic(_ node: Node) -> StatisticDefinition? {
        guard let map = node.mapping else { fail(.invalidValue, node, "a statistic must be a mapping"); return nil }
        checkKeys(map, allowed: ["name", "key", "value", "filter", "window", "aggregation", "resolution", "lateness", "top", "capacity", "exactUpTo",
                                 "features", "halfLife", "smoothing", "levels", "populationCapacity"],
                  what: "statistic")
        let sname = name(map["name"], "name", parent: node)
        let key = expression(map["key"], "key", required: node)
        let value = expression(map["value"], "value")
        let filter = expression(map["filter"], "filter")
        let window = duration(map["window"], "window", parent: node)
        var aggregation: Aggregation?
        if let a = string(map["aggregation"], "aggregation", required: node) {
            aggregation = Self.aggregations[a]
            if aggregation == nil {
                fail(.invalidValue, map["aggregation"]!, "unknown aggregation '\(a)' (one of: \(Self.aggregations.keys.sorted().joined(separator: ", ")))")
            }
        }
        let resolution = duration(map["resolution"], "resolution", default: -1)
        let lateness = map["lateness"] == nil ? 0 : (duration(map["lateness"], "lateness", default: 0) ?? 0)
        let top = positiveInt(map["top"], "top", default: 5)
        let capacity = positiveInt(map["capacity"], "capacity", default: max(16, min(top, 255) &* 2))
        let exact = positiveInt(map["exactUpTo"], "exactUpTo", default: 256)
        guard let sname, let key, let window, let aggregation else { return nil }
        var features: [(name: String, expression: ExpressionSource)] = []
        var risk: RiskSpec?
        if aggregation == .risk {
            features = returnsList(map["features"], what: "features")
            if map["features"] == nil { fail(.missingKey, node, "statistic '\(sname)': a risk statistic needs 'features' (name: expression)") }
            var spec = RiskSpec(features: features.map(\.name))
            if map["capacity"] != nil { spec.capacity = capacity }
            spec.populationCapacity = positiveInt(map["populationCapacity"], "populationCapacity", default: spec.populationCapacity)
            spec.halfLife = duration(map["halfLife"], "halfLife", default: spec.halfLife) ?? spec.halfLife
            spec.smoothing = positiveNumber(map["smoothing"], "smoothing", default: spec.smoothing)
            if let levels = map["levels"] {
                if let lm = levels.mapping {
                    checkKeys(lm, allowed: ["medium", "high"], what: "levels")
                    spec.medium = number(lm["medium"], "levels.medium", default: spec.medium)
                    spec.high = number(lm["high"], "levels.high", default: spec.high)
                } else {
                    fail(.invalidValue, levels, "'levels' must map medium and high to scores (bits)")
                }
            }
            if let problem = spec.problem {
                fail(.invalidValue, map["features"] ?? node, "statistic '\(sname)': \(problem)")
                return nil
            }
            risk = spec
        } else {
            for k in ["features", "halfLife", "smoothing", "levels", "populationCapacity"] where map[k] != nil {
                fail(.invalidValue, map[k]!, "'\(k)' belongs to a risk statistic, not to \(aggregation)")
            }
        }
        if let r = resolution, r > 0, window % r != 0 {
            fail(.invalidValue, map["resolution"]!, "resolution must divide the window evenly")
            return nil
        }
        if capacity < top && aggregation == .profile {
            fail(.invalidValue, map["capacity"] ?? node, "capacity (\(capacity)) must be at least top (\(top))")
        }
        do {
            let spec = try WindowSpec(validating: window, aggregation: aggregation, resolution: (resolution ?? -1) > 0 ? resolution : nil,
                                      allowedLateness: lateness, distinctExactLimit: exact, profileTop: top,
                                      profileCapacity: aggregation == .profile ? capacity : 16, risk: risk)
            return StatisticDefinition(name: sname, location: loc(node), key: key, value: value, filter: filter, window: spec,
                                       features: features)
        } catch {
            fail(.invalidValue, node, "statistic '\(sname)': \(error.message)")
            return nil
        }
    }

    // MARK: - Flow

    mutating func flow(_ doc: Node, _ map: Node.Mapping) -> FlowDefinition? {
        checkKeys(map, allowed: ["flow", "description", "trigger", "apps", "policies", "branches", "cooldown", "expiry", "failMode", "rememberDevice", "acr"], what: "flow")
        guard let fname = name(map["flow"], "flow", parent: doc) else { return nil }
        var trigger = FlowTrigger.ueba
        if let t = string(map["trigger"], "trigger") {
            if let ft = FlowTrigger(rawValue: t) { trigger = ft } else {
                fail(.invalidValue, map["trigger"]!, "trigger must be 'ueba' or 'http', got '\(t)'")
            }
        }
        var apps = AppScope.global
        if let a = map["apps"] {
            if let s = a.scalar?.string {
                apps = s == "global" ? .global : .apps([s])
            } else if let seq = a.sequence {
                var list: [String] = []
                for item in seq {
                    if let s = item.scalar?.string { list.append(s) } else { fail(.invalidValue, item, "apps: each app id must be a string") }
                }
                if list.isEmpty { fail(.invalidValue, a, "apps: an empty list covers no app; write 'global' for every app") }
                apps = .apps(list)
            } else {
                fail(.invalidValue, a, "apps must be 'global', an app id, or a list of app ids")
            }
        }
        var policies: [String] = []
        if let p = map["policies"] {
            if let seq = p.sequence {
                for item in seq { if let n = name(item, "policies entry", parent: p) { policies.append(n) } }
            } else { fail(.invalidValue, p, "'policies' must be a list of policy names") }
        }
        var branches: [BranchDefinition] = []
        if let b = map["branches"] {
            if let seq = b.sequence {
                for item in seq { if let br = branch(item) { branches.append(br) } }
            } else { fail(.invalidValue, b, "'branches' must be a list") }
        } else {
            fail(.missingKey, doc, "flow '\(fname)': missing 'branches'")
        }
        let cooldown = duration(map["cooldown"], "cooldown", default: 15 * 60_000) ?? 15 * 60_000
        let expiry = duration(map["expiry"], "expiry", default: 10 * 60_000) ?? 10 * 60_000
        var failMode = FailMode.open
        if let f = string(map["failMode"], "failMode") {
            if let m = FailMode(rawValue: f) { failMode = m } else {
                fail(.invalidValue, map["failMode"]!, "failMode must be 'open' or 'closed', got '\(f)'")
            }
        }
        var flow = FlowDefinition(name: fname, location: loc(doc), description: map["description"]?.scalar?.string, trigger: trigger,
                                  apps: apps, policies: policies, branches: branches, cooldown: cooldown, expiry: expiry, failMode: failMode)
        if let node = map["acr"] {
            if let a = string(node, "acr"), !a.isEmpty, a.utf8.count <= 256 { flow.acr = a } else { fail(.invalidValue, node, "'acr' must be a string of 1 to 256 bytes") }
        }
        if let node = map["rememberDevice"], let d = duration(node, "rememberDevice") {
            if d <= 400 * 86_400_000 { flow.rememberDevice = d } else { fail(.invalidValue, node, "'rememberDevice' must be at most 400d") }
        }
        return flow
    }

    mutating func branch(_ node: Node) -> BranchDefinition? {
        guard let map = node.mapping else { fail(.invalidValue, node, "a branch must be a mapping"); return nil }
        checkKeys(map, allowed: ["when", "allow", "deny", "mfa", "returns"], what: "branch")
        let when = expression(map["when"], "when", required: node)
        var actions: [BranchAction] = []
        if let a = map["allow"] {
            if a.scalar?.string == "true" { actions.append(.allow) } else { fail(.invalidValue, a, "'allow' takes the value true") }
        }
        if let d = map["deny"] {
            if d.scalar?.string == "true" { actions.append(.deny) } else { fail(.invalidValue, d, "'deny' takes the value true") }
        }
        if let m = map["mfa"] {
            var methods: [MFAMethod] = []
            if let seq = m.sequence, !seq.isEmpty {
                for item in seq {
                    if let s = item.scalar?.string, let method = MFAMethod(rawValue: s) {
                        if methods.contains(method) { fail(.invalidValue, item, "mfa: '\(s)' is listed twice") } else { methods.append(method) }
                    } else {
                        fail(.invalidValue, item, "mfa: unknown method '\(item.scalar?.string ?? "?")' (sms, email, otp, face)")
                    }
                }
            } else {
                fail(.invalidValue, m, "'mfa' takes a non-empty list of methods in order of preference: [sms, email, otp, face]")
            }
            actions.append(.mfa(methods))
        }
        if actions.count != 1 {
            fail(.invalidValue, node, "a branch needs exactly one of 'allow: true', 'deny: true' or 'mfa: [...]'")
            return nil
        }
        let returns = returnsList(map["returns"], what: "returns")
        guard let when else { return nil }
        return BranchDefinition(when: when, action: actions[0], returns: returns, location: loc(node))
    }
}
