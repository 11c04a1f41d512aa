import Foundation

// Type-checks the syntax tree and turns it into a tree of closures in one pass.
// Everything decidable at compile time (field indexes, overloads for known types,
// literal regexes and CIDRs, constant subexpressions) is decided here, so that
// evaluation is only the work the data requires.

/// Closures read back from an array (`[Eval]`) come wrapped in two reabstraction
/// thunks, paid on every call; read from a struct field they keep their own calling
/// convention. So compiled children are kept as `[Compiled]` and read through this.
struct EvalList {
    private let items: [Compiled]
    init(_ items: [Compiled]) { self.items = items }
    var count: Int { items.count }
    subscript(i: Int) -> Eval { items[i].eval }
}

struct Compiled {
    var type: CELType
    var eval: Eval
    /// Set when the value does not depend on the activation.
    var constant: Value?
    /// Set when the node only reads a variable, so that consumers can read the slot
    /// in place instead of calling through a closure.
    var slot: Int? = nil
    /// Set when the node reads one field of an object variable (`event.ip`), so that
    /// a comparison can read it without an intermediate closure call.
    var field: (slot: Int, schema: ObjectSchema, index: Int, name: String)? = nil

    static func const(_ v: Value, _ t: CELType) -> Compiled {
        Compiled(type: t, eval: { (_: inout Frame) throws(EvalError) -> Value in v }, constant: v)
    }
}

private let typeDenotations: [String: String] = [
    "int": "int", "uint": "uint", "double": "double", "bool": "bool", "string": "string",
    "bytes": "bytes", "list": "list", "map": "map", "null_type": "null_type", "type": "type",
    "google.protobuf.Duration": "google.protobuf.Duration",
    "google.protobuf.Timestamp": "google.protobuf.Timestamp",
]

private let timeAccessors: Set<String> = [
    "getFullYear", "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear",
    "getHours", "getMinutes", "getSeconds", "getMilliseconds",
]

func staticType(of v: Value) -> CELType {
    switch v {
    case .null: .null
    case .bool: .bool
    case .int: .int
    case .uint: .uint
    case .double: .double
    case .string: .string
    case .bytes: .bytes
    case .list: .list(.dyn)
    case .map: .map(.dyn, .dyn)
    case .duration: .duration
    case .timestamp: .timestamp
    case .type: .type
    case .object(let o): .object(o.schema)
    }
}

private func isNumeric(_ t: CELType) -> Bool { t == .int || t == .uint || t == .double }

/// Joins element types: equal types stay, anything else widens to dyn.
private func join(_ a: CELType, _ b: CELType) -> CELType { a == b ? a : .dyn }

struct Checker {
    let decls: Declarations
    let options: CompileOptions
    private var scopes: [(name: String, local: Int, type: CELType)] = []
    private(set) var maxLocals = 0
    /// Long operator chains parse iteratively but compile and evaluate recursively.
    private var depth = 0
    private static let maxDepth = 400

    init(declarations: Declarations, options: CompileOptions) {
        decls = declarations
        self.options = options
    }

    /// A static error: thrown when type checking, otherwise deferred to evaluation
    /// (CEL without the checker reports these when the expression runs).
    private func fail(_ code: ExpressionError.Code, _ message: String, _ pos: SourcePosition) throws(ExpressionError) -> Compiled {
        if options.typeCheck || code == .syntax {
            throw ExpressionError(code: code, message: message, position: pos)
        }
        let err = EvalError(message)
        return Compiled(type: .dyn, eval: { (_: inout Frame) throws(EvalError) -> Value in throw err }, constant: nil)
    }

    private func noOverload(_ fn: String, _ types: [CELType], _ pos: SourcePosition) throws(ExpressionError) -> Compiled {
        let display = fn.hasPrefix("_") || fn.hasSuffix("_") || fn == "@in"
            ? fn.replacingOccurrences(of: "@in", with: "in") : fn
        return try fail(
            .noMatchingOverload,
            "found no matching overload for '\(display)' applied to '(\(types.map(\.description).joined(separator: ", ")))'",
            pos)
    }

    /// Folds calls over constants now; a constant that fails stays a runtime error,
    /// as CEL reports it when evaluated.
    private func fold(_ c: Compiled, _ children: [Compiled]) -> Compiled {
        guard c.constant == nil, children.allSatisfy({ $0.constant != nil }) else { return c }
        var frame = Frame.empty
        guard let v = try? c.eval(&frame) else { return c }
        return .const(v, c.type)
    }

    mutating func compile(_ n: Node) throws(ExpressionError) -> Compiled {
        depth += 1
        defer { depth -= 1 }
        if depth > Checker.maxDepth {
            throw ExpressionError(code: .syntax, message: "expression nested too deeply", position: n.pos)
        }
        switch n.kind {
        case .literal(let v):
            return .const(v, staticType(of: v))
        case .ident(let name):
            return try ident(name, n.pos)
        case .select(let operand, let field):
            // A dotted name may be a variable or type by itself ("a.b.c"); the longest
            // declared prefix wins, unless a comprehension variable shadows its root.
            if let q = qualifiedName(n), !scopes.contains(where: { $0.name == rootName(n) }) {
                if decls.slot(of: q) != nil { return try ident(q, n.pos) }
                if let t = typeDenotations[q], lookup(rootName(n)) == nil { return .const(.type(t), .type) }
            }
            return try select(operand, field, n.pos)
        case .list(let items):
            var cs: [Compiled] = []
            for i in items { cs.append(try compile(i)) }
            let elem = cs.isEmpty ? CELType.dyn : cs.dropFirst().reduce(cs[0].type) { join($0, $1.type) }
            let evals = EvalList(cs)
            let c = Compiled(type: .list(elem), eval: { (f: inout Frame) throws(EvalError) -> Value in
                var out: [Value] = []
                out.reserveCapacity(evals.count)
                for i in 0..<evals.count { out.append(try evals[i](&f)) }
                return .list(out)
            })
            return fold(c, cs)
        case .map(let entries):
            var ks: [Compiled] = [], vs: [Compiled] = []
            for (k, v) in entries {
                let kc = try compile(k)
                switch kc.type {
                case .dyn, .string, .int, .uint, .bool: break
                default: _ = try fail(.noMatchingOverload, "unsupported map key type \(kc.type)", k.pos)
                }
                ks.append(kc)
                vs.append(try compile(v))
            }
            let kt = ks.isEmpty ? CELType.dyn : ks.dropFirst().reduce(ks[0].type) { join($0, $1.type) }
            let vt = vs.isEmpty ? CELType.dyn : vs.dropFirst().reduce(vs[0].type) { join($0, $1.type) }
            let kev = EvalList(ks), vev = EvalList(vs)
            let c = Compiled(type: .map(kt, vt), eval: { (f: inout Frame) throws(EvalError) -> Value in
                var m = ValueMap()
                for i in 0..<kev.count {
                    let k = try kev[i](&f)
                    guard MapKey(k) != nil, k.celTypeName != "double" else {
                        throw EvalError("unsupported key type \(k.celTypeName)")
                    }
                    if m.contains(k) { throw EvalError("Failed with repeated key: \(k)") }
                    m[k] = try vev[i](&f)
                }
                return .map(m)
            })
            return fold(c, ks + vs)
        case .call(let target, let function, let args):
            return try call(target, function, args, n.pos)
        }
    }

    private enum Binding { case variable(Int, CELType), local(Int, CELType) }

    private func lookup(_ name: String) -> Binding? {
        if let s = scopes.last(where: { $0.name == name }) { return .local(s.local, s.type) }
        if let slot = decls.slot(of: name) { return .variable(slot, decls.types[slot]) }
        return nil
    }

    private func qualifiedName(_ n: Node) -> String? {
        switch n.kind {
        case .ident(let s): return s
        case .select(let o, let f): return qualifiedName(o).map { $0 + "." + f }
        default: return nil
        }
    }

    private func rootName(_ n: Node) -> String {
        if case .select(let o, _) = n.kind { return rootName(o) }
        if case .ident(let s) = n.kind { return s }
        return ""
    }

    private mutating func ident(_ name: String, _ pos: SourcePosition) throws(ExpressionError) -> Compiled {
        switch lookup(name) {
        case .variable(let slot, let type)?:
            return Compiled(type: type, eval: { (f: inout Frame) throws(EvalError) -> Value in f.slots[slot] }, slot: slot)
        case .local(let i, let type)?:
            return Compiled(type: type, eval: { (f: inout Frame) throws(EvalError) -> Value in f.locals[i] })
        case nil: break
        }
        if let t = typeDenotations[name] { return .const(.type(t), .type) }
        return try fail(.undeclaredReference, "undeclared reference to '\(name)'", pos)
    }

    private mutating func select(_ operandNode: Node, _ field: String, _ pos: SourcePosition) throws(ExpressionError) -> Compiled {
        let operand = try compile(operandNode)
        let oe = operand.eval
        switch operand.type {
        case .object(let schema):
            guard let idx = schema.index(of: field) else {
                return try fail(.noSuchField, "no field '\(field)' on \(schema.name)", pos)
            }
            if let slot = operand.slot {
                var c = Compiled(type: schema.fieldTypes[idx], eval: { (f: inout Frame) throws(EvalError) -> Value in
                    if case .object(let o) = f.slots[slot], o.schema === schema {
                        guard let r = o.field(at: idx) else { throw EvalError("no such field: \(field)") }
                        return r
                    }
                    return try Ops.selectDynamic(f.slots[slot], field)
                })
                c.field = (slot, schema, idx, field)
                return c
            }
            let c = Compiled(type: schema.fieldTypes[idx], eval: { (f: inout Frame) throws(EvalError) -> Value in
                let v = try oe(&f)
                if case .object(let o) = v, o.schema === schema {
                    guard let r = o.field(at: idx) else { throw EvalError("no such field: \(field)") }
                    return r
                }
                return try Ops.selectDynamic(v, field)
            })
            return c
        case .map(let k, let v):
            guard k == .string || k == .dyn else {
                return try fail(.noSuchField, "cannot select field '\(field)' from \(operand.type)", pos)
            }
            let key = Value.string(field)
            if let (slot, schema, idx, name) = operand.field {
                // `event.custom.sessionId`: both selections in one closure.
                return Compiled(type: v, eval: { (f: inout Frame) throws(EvalError) -> Value in
                    if case .object(let o) = f.slots[slot], o.schema === schema, let found = o.lookup(mapField: idx, key: field) {
                        guard let r = found else { throw EvalError("no such key: \(field)") }
                        return r
                    }
                    let m = try Ops.selectField(f.slots[slot], schema, idx, name)
                    if case .map(let mm) = m {
                        guard let r = mm[key] else { throw EvalError("no such key: \(field)") }
                        return r
                    }
                    return try Ops.selectDynamic(m, field)
                })
            }
            let c = Compiled(type: v, eval: { (f: inout Frame) throws(EvalError) -> Value in
                let m = try oe(&f)
                if case .map(let mm) = m {
                    guard let r = mm[key] else { throw EvalError("no such key: \(field)") }
                    return r
                }
                return try Ops.selectDynamic(m, field)
            })
            return fold(c, [operand])
        case .dyn:
            let c = Compiled(type: .dyn, eval: { (f: inout Frame) throws(EvalError) -> Value in
                try Ops.selectDynamic(try oe(&f), field)
            })
            return fold(c, [operand])
        default:
            return try fail(.noSuchField, "type \(operand.type) has no field '\(field)'", pos)
        }
    }

    private mutating func has(_ args: [Node], _ pos: SourcePosition) throws(ExpressionError) -> Compiled {
        guard args.count == 1, case .select(let operandNode, let field) = args[0].kind else {
            return try fail(.invalidArgument, "has() requires a field selection, like has(x.field)", pos)
        }
        let operand = try compile(operandNode)
        let oe = operand.eval
        switch operand.type {
        case .object(let schema):
            guard let idx = schema.index(of: field) else {
                return try fail(.noSuchField, "no field '\(field)' on \(schema.name)", args[0].pos)
            }
            if let slot = operand.slot {
                // `has(event.ip)`: the variable read in place, without a closure call.
                return Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
                    if case .object(let o) = f.slots[slot], o.schema === schema { return .bool(o.hasField(at: idx)) }
                    return try Ops.hasDynamic(f.slots[slot], field)
                })
            }
            return Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
                let v = try oe(&f)
                if case .object(let o) = v, o.schema === schema { return .bool(o.hasField(at: idx)) }
                return try Ops.hasDynamic(v, field)
            })
        case .map, .dyn:
            if case .map = operand.type, let (slot, schema, idx, name) = operand.field {
                // `has(event.custom.deviceId)`: the selection and the test in one closure.
                let key = Value.string(field)
                return Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
                    if case .object(let o) = f.slots[slot], o.schema === schema, let found = o.lookup(mapField: idx, key: field) {
                        return .bool(found != nil)
                    }
                    let m = try Ops.selectField(f.slots[slot], schema, idx, name)
                    if case .map(let mm) = m { return .bool(mm.contains(key)) }
                    return try Ops.hasDynamic(m, field)
                })
            }
            let c = Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
                try Ops.hasDynamic(try oe(&f), field)
            })
            return fold(c, [operand])
        default:
            return try fail(.noSuchField, "has() cannot test field '\(field)' of \(operand.type)", args[0].pos)
        }
    }

    // MARK: calls

    private mutating func call(_ targetNode: Node?, _ fn: String, _ argNodes: [Node], _ pos: SourcePosition) throws(ExpressionError) -> Compiled {
        if targetNode == nil && fn == "has" && options.macros { return try has(argNodes, pos) }
        if let t = targetNode, options.macros, let c = try macro(t, fn, argNodes, pos) { return c }

        var args: [Compiled] = []
        if let t = targetNode { args.append(try compile(t)) }
        for a in argNodes { args.append(try compile(a)) }
        return try overload(fn, isMethod: targetNode != nil, argNodes, args, pos)
    }

    /// The rest of `call`, in a frame of its own: unoptimised builds give it tens of KB
    /// of stack, and keeping it off the recursion (compile → call → compile) lets
    /// expressions nest to `maxDepth` without overflowing a thread's stack.
    @inline(never)
    private mutating func overload(
        _ fn: String, isMethod: Bool, _ argNodes: [Node], _ args: [Compiled], _ pos: SourcePosition
    ) throws(ExpressionError) -> Compiled {
        // Without the checker every overload is resolved at runtime.
        let types = options.typeCheck ? args.map(\.type) : args.map { _ in CELType.dyn }
        let evals = EvalList(args)

        func arity(_ n: Int) throws(ExpressionError) -> Compiled? {
            if args.count == n { return nil }
            return try fail(.wrongArgumentCount, "'\(fn)' expects \(n - (isMethod ? 1 : 0)) argument(s), got \(argNodes.count)", pos)
        }
        func unary(_ t: CELType, _ op: @escaping @Sendable (Value) throws(EvalError) -> Value) -> Compiled {
            let a = evals[0]
            return fold(Compiled(type: t, eval: { (f: inout Frame) throws(EvalError) -> Value in try op(try a(&f)) }), args)
        }
        func binary(_ t: CELType, _ op: @escaping @Sendable (Value, Value) throws(EvalError) -> Value) -> Compiled {
            let a = evals[0], b = evals[1]
            return fold(Compiled(type: t, eval: { (f: inout Frame) throws(EvalError) -> Value in
                let x = try a(&f)
                return try op(x, try b(&f))
            }), args)
        }

        switch fn {
        case "_&&_", "_||_":
            if types.contains(where: { $0 != .bool && $0 != .dyn }) { return try noOverload(fn, types, pos) }
            return logical(isAnd: fn == "_&&_", evals[0], evals[1], args)
        case "!_":
            guard types[0] == .bool || types[0] == .dyn else { return try noOverload(fn, types, pos) }
            return unary(.bool, Ops.not)
        case "-_":
            switch types[0] {
            case .int, .double, .duration, .dyn: return unary(types[0], Ops.negate)
            default: return try noOverload(fn, types, pos)
            }
        case "_?_:_":
            guard types[0] == .bool || types[0] == .dyn else { return try noOverload(fn, types, pos) }
            let c = evals[0], a = evals[1], b = evals[2]
            return fold(Compiled(type: join(types[1], types[2]), eval: { (f: inout Frame) throws(EvalError) -> Value in
                switch try c(&f) {
                case .bool(true): return try a(&f)
                case .bool(false): return try b(&f)
                case let v: throw Ops.noOverload("_?_:_", v)
                }
            }), args)
        case "_+_", "_-_", "_*_", "_/_", "_%_":
            guard let t = arithmeticType(fn, types[0], types[1]) else { return try noOverload(fn, types, pos) }
            let op: @Sendable (Value, Value) throws(EvalError) -> Value =
                switch fn {
                case "_+_": Ops.add
                case "_-_": Ops.subtract
                case "_*_": Ops.multiply
                case "_/_": Ops.divide
                default: Ops.modulo
                }
            return binary(t, op)
        case "_==_", "_!=_":
            guard comparableForEquality(types[0], types[1]) else { return try noOverload(fn, types, pos) }
            return equality(negate: fn == "_!=_", args)
        case "_<_", "_<=_", "_>_", "_>=_":
            guard orderable(types[0], types[1]) else { return try noOverload(fn, types, pos) }
            return ordering(fn, args)
        case "@in":
            switch types[1] {
            case .list, .map, .dyn: break
            default: return try noOverload(fn, types, pos)
            }
            if case .list(let items)? = args[1].constant {
                let strings = items.compactMap { v -> String? in if case .string(let s) = v { s } else { nil } }
                if strings.count == items.count {
                    let set: Set<String>? = strings.count > 8 ? Set(strings) : nil
                    return unary(.bool) { (x: Value) throws(EvalError) -> Value in try Ops.containsString(strings, set, x) }
                }
            }
            return binary(.bool) { (x: Value, c: Value) throws(EvalError) -> Value in try Ops.contains(c, x) }
        case "_[_]":
            switch types[0] {
            case .list(let e):
                guard [.int, .uint, .dyn].contains(types[1]) else { return try noOverload(fn, types, pos) }
                return binary(e, Ops.index)
            case .map(let k, let v):
                guard isAssignable(types[1], to: k) || (isNumeric(types[1]) && isNumeric(k)) else {
                    return try noOverload(fn, types, pos)
                }
                return binary(v, Ops.index)
            case .dyn: return binary(.dyn, Ops.index)
            default: return try noOverload(fn, types, pos)
            }
        case "size":
            if let e = try arity(1) { return e }
            switch types[0] {
            case .string, .bytes, .list, .map, .dyn: return unary(.int, Ops.size)
            default: return try noOverload(fn, types, pos)
            }
        case "contains", "startsWith", "endsWith":
            guard isMethod else { return try fail(.undeclaredReference, "'\(fn)' must be called on a string, like s.\(fn)(x)", pos) }
            if let e = try arity(2) { return e }
            guard (types[0] == .string || types[0] == .dyn) && (types[1] == .string || types[1] == .dyn) else {
                return try noOverload(fn, types, pos)
            }
            return stringPredicate(fn, args)
        case "matches":
            if let e = try arity(2) { return e }
            guard (types[0] == .string || types[0] == .dyn) && (types[1] == .string || types[1] == .dyn) else {
                return try noOverload(fn, types, pos)
            }
            return try matches(args, argNodes.last!.pos)
        case "inCidr":
            if let e = try arity(2) { return e }
            guard (types[0] == .string || types[0] == .dyn) && (types[1] == .string || types[1] == .dyn) else {
                return try noOverload(fn, types, pos)
            }
            return try inCidr(args, argNodes.last!.pos)
        case "ipPrefix":
            if let e = try arity(3) { return e }
            guard [.string, .dyn].contains(types[0]) && [.int, .dyn].contains(types[1]) && [.int, .dyn].contains(types[2]) else {
                return try noOverload(fn, types, pos)
            }
            let ip = evals[0], v4 = evals[1], v6 = evals[2]
            return fold(Compiled(type: .string, eval: { (f: inout Frame) throws(EvalError) -> Value in
                let a = try ip(&f), b = try v4(&f), c = try v6(&f)
                guard case .string(let text) = a, case .int(let bits4) = b, case .int(let bits6) = c else { throw Ops.noOverload("ipPrefix", a, b, c) }
                guard let p = CIDR.network(of: Substring(text), v4Bits: bits4, v6Bits: bits6) else {
                    throw EvalError("ipPrefix: '\(text.prefix(64))' is not an IP address, or the prefix length is out of range")
                }
                return .string(p)
            }), args)
        case "int", "uint", "double", "string", "bool", "bytes", "duration", "timestamp", "dyn", "type":
            guard !isMethod else { return try fail(.undeclaredReference, "undeclared reference to method '\(fn)'", pos) }
            if let e = try arity(1) { return e }
            return try conversion(fn, args, pos)
        default:
            if timeAccessors.contains(fn), isMethod {
                guard args.count <= 2 else { return try fail(.wrongArgumentCount, "'\(fn)' takes at most one argument", pos) }
                switch types[0] {
                case .timestamp, .dyn: break
                case .duration where args.count == 1 && ["getHours", "getMinutes", "getSeconds", "getMilliseconds"].contains(fn): break
                default: return try noOverload(fn, types, pos)
                }
                let zone = args.count == 2 ? evals[1] : nil
                let a = evals[0]
                return fold(Compiled(type: .int, eval: { (f: inout Frame) throws(EvalError) -> Value in
                    let v = try a(&f)
                    return try Ops.timeAccessor(fn, v, zone: try zone?(&f))
                }), args)
            }
            return try fail(.undeclaredReference, "undeclared reference to function '\(fn)'", pos)
        }
    }

    private func arithmeticType(_ fn: String, _ a: CELType, _ b: CELType) -> CELType? {
        let allowed: [(CELType, CELType, CELType)]
        switch fn {
        case "_+_":
            allowed = [(.int, .int, .int), (.uint, .uint, .uint), (.double, .double, .double), (.string, .string, .string),
                       (.bytes, .bytes, .bytes), (.duration, .duration, .duration), (.timestamp, .duration, .timestamp),
                       (.duration, .timestamp, .timestamp)]
            if case .list(let x) = a, case .list(let y) = b { return .list(join(x, y)) }
            if case .list = a, b == .dyn { return a }
            if case .list = b, a == .dyn { return b }
        case "_-_":
            allowed = [(.int, .int, .int), (.uint, .uint, .uint), (.double, .double, .double), (.duration, .duration, .duration),
                       (.timestamp, .timestamp, .duration), (.timestamp, .duration, .timestamp)]
        case "_%_":
            allowed = [(.int, .int, .int), (.uint, .uint, .uint)]
        default:
            allowed = [(.int, .int, .int), (.uint, .uint, .uint), (.double, .double, .double)]
        }
        let matches = allowed.filter { ($0.0 == a || a == .dyn) && ($0.1 == b || b == .dyn) }
        if matches.isEmpty { return nil }
        let results = Set(matches.map(\.2))
        return results.count == 1 ? results.first! : .dyn
    }

    /// Static equality check: CEL compares any values at runtime, but comparing, say,
    /// a string with an int is always false and almost certainly a mistake.
    private func comparableForEquality(_ a: CELType, _ b: CELType) -> Bool {
        switch (a, b) {
        case (.dyn, _), (_, .dyn), (.null, _), (_, .null): return true
        case (.list, .list), (.map, .map): return true
        default: return a == b || (isNumeric(a) && isNumeric(b))
        }
    }

    private func orderable(_ a: CELType, _ b: CELType) -> Bool {
        let ok: Set<CELType> = [.int, .uint, .double, .string, .bytes, .bool, .duration, .timestamp]
        switch (a, b) {
        case (.dyn, .dyn): return true
        case (.dyn, let t), (let t, .dyn): return ok.contains(t)
        default: return ok.contains(a) && (a == b || (isNumeric(a) && isNumeric(b)))
        }
    }

    /// `&&` and `||` are commutative over errors: a deciding value on either side wins,
    /// otherwise the first error is reported.
    private func logical(isAnd: Bool, _ l: @escaping Eval, _ r: @escaping Eval, _ args: [Compiled]) -> Compiled {
        let fn = isAnd ? "_&&_" : "_||_"
        let c = Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
            var pending: EvalError? = nil
            do throws(EvalError) {
                switch try l(&f) {
                case .bool(let b): if b != isAnd { return .bool(b) }
                case let v: pending = Ops.noOverload(fn, v)
                }
            } catch { pending = error }
            do throws(EvalError) {
                switch try r(&f) {
                case .bool(let b):
                    if b != isAnd { return .bool(b) }
                    if let pending { throw pending }
                    return .bool(isAnd)
                case let v:
                    throw pending ?? Ops.noOverload(fn, v)
                }
            } catch {
                throw pending ?? error
            }
        })
        return fold(c, args)
    }

    private func equality(negate: Bool, _ args: [Compiled]) -> Compiled {
        // The hot-path shape: a field compared with a string literal.
        let (varSide, constSide): (Compiled, Value?) =
            args[1].constant != nil ? (args[0], args[1].constant) : (args[1], args[0].constant)
        if case .string(let k)? = constSide, args[0].constant == nil || args[1].constant == nil {
            let e = varSide.eval
            if k.utf8.allSatisfy({ $0 < 0x80 }) {
                // A string canonically equivalent to an ASCII one but with other bytes
                // is always longer, so equal length plus Swift's `==` is byte equality.
                let n = k.utf8.count
                if let (slot, schema, idx, name) = varSide.field {
                    // `event.behaviorResult == 'failure'`: the hottest shape, in one closure.
                    return Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
                        let v = try Ops.selectField(f.slots[slot], schema, idx, name)
                        if case .string(let s) = v { return .bool((s.utf8.count == n && s == k) != negate) }
                        return .bool(negate)
                    })
                }
                return Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
                    if case .string(let s) = try e(&f) { return .bool((s.utf8.count == n && s == k) != negate) }
                    return .bool(negate)
                })
            }
            return Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
                if case .string(let s) = try e(&f) { return .bool(stringsEqual(s, k) != negate) }
                return .bool(negate)
            })
        }
        let a = args[0].eval, b = args[1].eval
        return fold(Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
            let x = try a(&f)
            return .bool(celEquals(x, try b(&f)) != negate)
        }), args)
    }

    private func ordering(_ fn: String, _ args: [Compiled]) -> Compiled {
        let a = args[0].eval, b = args[1].eval
        let accept: @Sendable (Int) -> Bool =
            switch fn {
            case "_<_": { $0 < 0 }
            case "_<=_": { $0 <= 0 }
            case "_>_": { $0 > 0 }
            default: { $0 >= 0 }
            }
        if case .int(let k)? = args[1].constant, args[0].constant == nil {
            // Thresholds (`event.count > 5`) compare a variable with an int literal.
            return Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
                let x = try a(&f)
                if case .int(let i) = x { return .bool(accept(i < k ? -1 : (i > k ? 1 : 0))) }
                return .bool(try Ops.compare(fn, x, .int(k)).map(accept) ?? false)
            })
        }
        if args[0].type == .int && args[1].type == .int {
            return fold(Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
                let x = try a(&f), y = try b(&f)
                if case .int(let i) = x, case .int(let j) = y { return .bool(accept(i < j ? -1 : (i > j ? 1 : 0))) }
                return .bool(try Ops.compare(fn, x, y).map(accept) ?? false)
            }), args)
        }
        return fold(Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
            let x = try a(&f)
            return .bool(try Ops.compare(fn, x, try b(&f)).map(accept) ?? false)
        }), args)
    }

    private func stringPredicate(_ fn: String, _ args: [Compiled]) -> Compiled {
        let a = args[0].eval, b = args[1].eval
        return fold(Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
            let x = try a(&f)
            return try Ops.stringFunction(fn, x, try b(&f))
        }), args)
    }

    /// `matches` runs Swift's Regex, a backtracking engine (CEL specifies RE2's linear one):
    /// a pattern and a subject an attacker chose could take exponential time on the poll
    /// thread. So the pattern must be a constant of the policy file, compiled once at load,
    /// and the subject is at most `matchesMaxSubjectBytes` (longer is an evaluation error,
    /// which the decision reports).
    static let matchesMaxSubjectBytes = 4096

    private func matches(_ args: [Compiled], _ patternPos: SourcePosition) throws(ExpressionError) -> Compiled {
        let a = args[0].eval
        guard case .string(let pattern)? = args[1].constant else {
            return try fail(.invalidArgument, "matches needs a constant pattern (a string literal): a pattern from event data could run for exponential time", patternPos)
        }
        let re: CompiledRegex
        do { re = try CompiledRegex(pattern) } catch {
            return try fail(.invalidArgument, "invalid regular expression '\(pattern)': \(error)", patternPos)
        }
        let limit = Self.matchesMaxSubjectBytes
        return fold(Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
            let v = try a(&f)
            guard case .string(let s) = v else { throw Ops.noOverload("matches", v) }
            guard s.utf8.count <= limit else { throw EvalError("matches: a subject of \(s.utf8.count) bytes exceeds \(limit)") }
            return .bool(re.matches(s))
        }), [args[0]])
    }

    private func inCidr(_ args: [Compiled], _ cidrPos: SourcePosition) throws(ExpressionError) -> Compiled {
        let a = args[0].eval
        if case .string(let text)? = args[1].constant {
            guard let net = CIDR(text) else {
                return try fail(.invalidArgument, "invalid CIDR '\(text)'", cidrPos)
            }
            return fold(Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
                let v = try a(&f)
                guard case .string(let ip) = v else { throw Ops.noOverload("inCidr", v) }
                return .bool(net.contains(Substring(ip)))
            }), [args[0]])
        }
        let b = args[1].eval
        return Compiled(type: .bool, eval: { (f: inout Frame) throws(EvalError) -> Value in
            let v = try a(&f), c = try b(&f)
            guard case .string(let ip) = v, case .string(let text) = c else { throw Ops.noOverload("inCidr", v, c) }
            guard let net = CIDR(text) else { throw EvalError("invalid CIDR '\(text)'") }
            return .bool(net.contains(Substring(ip)))
        })
    }

    private func conversion(_ fn: String, _ args: [Compiled], _ pos: SourcePosition) throws(ExpressionError) -> Compiled {
        let t = args[0].type
        let a = args[0].eval
        func conv(_ result: CELType, _ from: [CELType], _ op: @escaping @Sendable (Value) throws(EvalError) -> Value) throws(ExpressionError) -> Compiled {
            guard t == .dyn || from.contains(t) else { return try noOverload(fn, [t], pos) }
            return fold(Compiled(type: result, eval: { (f: inout Frame) throws(EvalError) -> Value in try op(try a(&f)) }), args)
        }
        switch fn {
        case "int": return try conv(.int, [.int, .uint, .double, .string, .timestamp, .duration], Ops.toInt)
        case "uint": return try conv(.uint, [.int, .uint, .double, .string], Ops.toUint)
        case "double": return try conv(.double, [.int, .uint, .double, .string], Ops.toDouble)
        case "string": return try conv(.string, [.int, .uint, .double, .string, .bool, .bytes, .duration, .timestamp], Ops.toString)
        case "bool": return try conv(.bool, [.bool, .string], Ops.toBool)
        case "bytes": return try conv(.bytes, [.bytes, .string], Ops.toBytes)
        case "duration":
            if case .string(let s)? = args[0].constant, case .failure(let e) = parseDuration(s), options.typeCheck {
                throw ExpressionError(code: .invalidArgument, message: e.message, position: pos)
            }
            return try conv(.duration, [.duration, .string], Ops.toDuration)
        case "timestamp":
            return try conv(.timestamp, [.timestamp, .string, .int], Ops.toTimestamp)
        case "dyn":
            var c = args[0]
            c.type = .dyn
            return c
        default:  // type
            return fold(Compiled(type: .type, eval: { (f: inout Frame) throws(EvalError) -> Value in
                .type(try a(&f).celTypeName)
            }), args)
        }
    }

    // MARK: macros

    private mutating func bindLocal(_ name: String, _ type: CELType) -> Int {
        let local = maxLocals
        maxLocals += 1
        scopes.append((name, local, type))
        return local
    }

    private func iterationVar(_ n: Node) -> String? {
        if case .ident(let s) = n.kind { return s }
        return nil
    }

    /// Expands `all`, `exists`, `exists_one`, `filter`, `map` and the two-variable forms
    /// (`all(i, v, p)`, `transformList`, `transformMap`); nil when the call is not a macro.
    private mutating func macro(_ targetNode: Node, _ fn: String, _ argNodes: [Node], _ pos: SourcePosition) throws(ExpressionError) -> Compiled? {
        let oneVar: Set<String> = ["all", "exists", "exists_one", "existsOne", "filter", "map"]
        let twoVar: Set<String> = ["all", "exists", "exists_one", "existsOne", "transformList", "transformMap"]
        let names = argNodes.map(iterationVar)
        var vars: [String]
        var body: [Node]
        if argNodes.count == 2, oneVar.contains(fn), let v = names[0] {
            vars = [v]; body = [argNodes[1]]
        } else if argNodes.count == 3, fn == "map", let v = names[0] {
            vars = [v]; body = [argNodes[1], argNodes[2]]
        } else if argNodes.count == 3, twoVar.contains(fn), let i = names[0], let v = names[1] {
            vars = [i, v]; body = [argNodes[2]]
        } else if argNodes.count == 4, fn == "transformList" || fn == "transformMap", let i = names[0], let v = names[1] {
            vars = [i, v]; body = [argNodes[2], argNodes[3]]
        } else if oneVar.contains(fn) || twoVar.contains(fn), !argNodes.isEmpty, names[0] == nil {
            return try fail(.invalidArgument, "the first argument of '\(fn)' must be a variable name", argNodes[0].pos)
        } else {
            return nil
        }
        let range = try compile(targetNode)
        let (firstType, secondType): (CELType, CELType)
        switch range.type {
        case .list(let e): (firstType, secondType) = vars.count == 2 ? (.int, e) : (e, .dyn)
        case .map(let k, let v): (firstType, secondType) = (k, v)
        case .dyn: (firstType, secondType) = (.dyn, .dyn)
        default: return try noOverload(fn, [range.type], pos)
        }
        let scopeDepth = scopes.count
        let s1 = bindLocal(vars[0], firstType)
        let s2 = vars.count == 2 ? bindLocal(vars[1], secondType) : -1
        var bodies: [Compiled] = []
        for b in body { bodies.append(try compile(b)) }
        scopes.removeLast(scopes.count - scopeDepth)

        let twoVars = vars.count == 2
        let rangeEval = range.eval
        let kind = fn
        // Predicates must be bool when their type is known.
        let predicateIndex: Int? =
            switch fn {
            case "all", "exists", "exists_one", "existsOne", "filter": 0
            case "map", "transformList", "transformMap": body.count == 2 ? 0 : nil
            default: nil
            }
        if let p = predicateIndex, options.typeCheck, bodies[p].type != .bool && bodies[p].type != .dyn {
            return try fail(.noMatchingOverload, "predicate of '\(fn)' must be bool, not \(bodies[p].type)", body[p].pos)
        }
        let pred = predicateIndex.map { bodies[$0].eval }
        let transform = (kind == "map" || kind == "transformList" || kind == "transformMap") ? bodies.last!.eval : nil
        let resultType: CELType =
            switch kind {
            case "filter": .list(firstType)
            case "map", "transformList": .list(bodies.last!.type)
            case "transformMap":
                if case .map(let k, _) = range.type { .map(k, bodies.last!.type) } else { .map(.dyn, bodies.last!.type) }
            default: .bool
            }

        let c = Compiled(type: resultType, eval: { (f: inout Frame) throws(EvalError) -> Value in
            let r = try rangeEval(&f)
            let count: Int
            var list: [Value] = []
            var map = ValueMap()
            switch r {
            case .list(let l): list = l; count = l.count
            case .map(let m): map = m; count = m.count
            default: throw Ops.noOverload(kind, r)
            }
            let isMap: Bool = { if case .map = r { return true } else { return false } }()
            func bind(_ i: Int, _ f: inout Frame) {
                if isMap {
                    f.locals[s1] = map.keys[i]
                    if twoVars { f.locals[s2] = map.values[i] }
                } else if twoVars {
                    f.locals[s1] = .int(Int64(i))
                    f.locals[s2] = list[i]
                } else {
                    f.locals[s1] = list[i]
                }
            }
            func truth(_ v: Value) throws(EvalError) -> Bool {
                guard case .bool(let b) = v else { throw Ops.noOverload(kind, v) }
                return b
            }
            switch kind {
            case "all", "exists":
                // Like && and ||: a deciding element wins over errors elsewhere.
                let decisive = kind == "exists"
                var pending: EvalError? = nil
                for i in 0..<count {
                    bind(i, &f)
                    do throws(EvalError) {
                        if try truth(try pred!(&f)) == decisive { return .bool(decisive) }
                    } catch { if pending == nil { pending = error } }
                }
                if let pending { throw pending }
                return .bool(!decisive)
            case "exists_one", "existsOne":
                var n = 0
                for i in 0..<count {
                    bind(i, &f)
                    if try truth(try pred!(&f)) { n += 1 }
                }
                return .bool(n == 1)
            case "filter":
                var out: [Value] = []
                for i in 0..<count {
                    bind(i, &f)
                    if try truth(try pred!(&f)) { out.append(isMap ? map.keys[i] : list[i]) }
                }
                return .list(out)
            case "transformMap":
                var out = ValueMap()
                for i in 0..<count {
                    bind(i, &f)
                    if let pred, try !truth(try pred(&f)) { continue }
                    out[isMap ? map.keys[i] : .int(Int64(i))] = try transform!(&f)
                }
                return .map(out)
            default:  // map, transformList
                var out: [Value] = []
                for i in 0..<count {
                    bind(i, &f)
                    if let pred, try !truth(try pred(&f)) { continue }
                    out.append(try transform!(&f))
                }
                return .list(out)
            }
        })
        return c
    }
}
