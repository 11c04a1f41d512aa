// camfa's condition language: the subset of CEL (github.com/google/cel-spec,
// langdef.md) that policies need, checked when a policy loads and compiled to a tree
// of closures for the per-event hot path.
//
// Supported: int/uint/double/string/bytes/bool/null literals (raw, triple-quoted,
// escapes), lists, maps, field selection on host objects (resolved to an index at
// compile time) and maps, indexing, + - * / % with CEL's overflow errors, comparisons
// across int/uint/double, && || ! with CEL's error absorption, ?:, in, has(), size,
// contains, startsWith, endsWith, matches (RE via Swift Regex), the macros all,
// exists, exists_one/existsOne, filter, map (2 and 3 arguments), transformList,
// transformMap, duration()/timestamp() with their arithmetic and get* accessors
// (fixed offsets only), int/uint/double/string/bool/bytes/type/dyn conversions, and
// camfa's inCidr(ip, cidr) for IPv4 and IPv6.
//
// Not supported: protobuf messages and message construction, containers/namespaces,
// named IANA time zones, timestamps outside 1677-2262 (Int64 nanoseconds).

/// A place in an expression's text, 1-based; columns count Unicode scalars.
public struct SourcePosition: Sendable, Hashable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
    public var description: String { "\(line):\(column)" }
}

/// Why an expression was rejected when it was compiled.
public struct ExpressionError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case syntax
        case undeclaredReference
        case noSuchField
        case noMatchingOverload
        case typeMismatch
        case invalidArgument
        case wrongArgumentCount
        case unsupported
    }
    public var code: Code
    public var message: String
    public var position: SourcePosition

    public init(code: Code, message: String, position: SourcePosition) {
        self.code = code
        self.message = message
        self.position = position
    }

    public var description: String { "\(position.line):\(position.column): \(message)" }
}

/// The variables an expression may name, each with its static type and the slot its
/// runtime value occupies in an `Activation`.
public struct Declarations: Sendable {
    var slots: [String: Int] = [:]
    var types: [CELType] = []
    var names: [String] = []

    public init() {}

    /// Declaring a name again replaces its type and keeps its slot.
    @discardableResult
    public mutating func declare(_ name: String, _ type: CELType) -> Int {
        if let s = slots[name] {
            types[s] = type
            return s
        }
        slots[name] = types.count
        types.append(type)
        names.append(name)
        return types.count - 1
    }

    public var count: Int { types.count }
    public func slot(of name: String) -> Int? { slots[name] }
    public func type(of name: String) -> CELType? { slots[name].map { types[$0] } }
}

/// Runtime values of the declared variables, by slot.
public struct Activation: Sendable {
    var values: [Value]
    public init(slotCount: Int) { values = Array(repeating: .null, count: slotCount) }
    public subscript(slot: Int) -> Value {
        get { values[slot] }
        set { values[slot] = newValue }
    }
}

/// Why evaluation produced no value (division by zero, missing key, overflow, ...).
public struct EvalError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Options for `Expression.compile`.
public struct CompileOptions: Sendable {
    /// When false, type errors and unknown names become runtime errors instead of
    /// compile errors (CEL's "parse-only" mode; the conformance suite needs it).
    public var typeCheck: Bool = true
    /// When false, `all`, `exists`, `map`, ... are ordinary (unknown) functions.
    public var macros: Bool = true
    public init(typeCheck: Bool = true, macros: Bool = true) {
        self.typeCheck = typeCheck
        self.macros = macros
    }
}

/// A checked expression, ready to evaluate many times from many threads.
/// A final class: the engine reads expressions out of policies for every event, and
/// copying a struct would retain its text, its type and its closure each time.
public final class CompiledExpression: Sendable {
    public let source: String
    public let resultType: CELType
    let root: Eval
    let slotCount: Int
    let localCount: Int

    init(source: String, resultType: CELType, root: @escaping Eval, slotCount: Int, localCount: Int) {
        self.source = source
        self.resultType = resultType
        self.root = root
        self.slotCount = slotCount
        self.localCount = localCount
    }

    public func evaluate(_ activation: Activation) -> Result<Value, EvalError> {
        guard activation.values.count >= slotCount else {
            return .failure(EvalError("activation has \(activation.values.count) slots, the expression was compiled for \(slotCount)"))
        }
        if localCount == 0 {
            var frame = Frame(slots: activation.values, locals: UnsafeMutableBufferPointer(start: nil, count: 0))
            do { return .success(try root(&frame)) } catch { return .failure(error) }
        }
        return withUnsafeTemporaryAllocation(of: Value.self, capacity: localCount) { locals -> Result<Value, EvalError> in
            locals.initialize(repeating: .null)
            defer { locals.deinitialize() }
            var frame = Frame(slots: activation.values, locals: locals)
            do throws(EvalError) { return .success(try root(&frame)) } catch { return .failure(error) }
        }
    }

    /// Convenience for callers that only want a truth value: errors and non-bool
    /// results are reported as errors.
    public func evaluateBool(_ activation: Activation) -> Result<Bool, EvalError> {
        switch evaluate(activation) {
        case .success(.bool(let b)): return .success(b)
        case .success(let v): return .failure(EvalError("expected bool, got \(v.celTypeName)"))
        case .failure(let e): return .failure(e)
        }
    }
}

public enum Expression {
    public static func compile(
        _ source: String, declarations: Declarations, expecting: CELType? = nil
    ) throws(ExpressionError) -> CompiledExpression {
        try compile(source, declarations: declarations, expecting: expecting, options: CompileOptions())
    }

    public static func compile(
        _ source: String, declarations: Declarations, expecting: CELType? = nil, options: CompileOptions
    ) throws(ExpressionError) -> CompiledExpression {
        let ast = try Parser.parse(source)
        var checker = Checker(declarations: declarations, options: options)
        let c = try checker.compile(ast)
        if let expecting, !isAssignable(c.type, to: expecting) {
            throw ExpressionError(
                code: .typeMismatch,
                message: "expression has type \(c.type), expected \(expecting)",
                position: ast.pos)
        }
        let root: Eval
        if let k = c.constant {
            root = { (_: inout Frame) throws(EvalError) -> Value in k }
        } else {
            root = c.eval
        }
        return CompiledExpression(
            source: source, resultType: c.type, root: root,
            slotCount: declarations.count, localCount: checker.maxLocals)
    }
}

/// Whether a value of static type `t` can be used where `expected` is required;
/// dyn on either side defers the decision to runtime.
func isAssignable(_ t: CELType, to expected: CELType) -> Bool {
    switch (t, expected) {
    case (.dyn, _), (_, .dyn): return true
    case (.list(let a), .list(let b)): return isAssignable(a, to: b)
    case (.map(let ak, let av), .map(let bk, let bv)): return isAssignable(ak, to: bk) && isAssignable(av, to: bv)
    default: return t == expected
    }
}
