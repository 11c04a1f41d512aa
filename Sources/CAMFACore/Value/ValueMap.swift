/// A map that keeps insertion order, so that anything serialized from it (decisions,
/// state dumps) is byte-identical for the same input. Keys follow CEL's rules: string,
/// int, uint and bool; numerically equal int and uint keys are the same key.
public struct ValueMap: Sendable {
    public private(set) var keys: [Value] = []
    public private(set) var values: [Value] = []
    private var index: [MapKey: Int] = [:]

    public init() {}

    public init(_ pairs: [(String, Value)]) {
        for (k, v) in pairs { self[.string(k)] = v }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    /// nil when the key is not a valid map key type.
    public subscript(key: Value) -> Value? {
        get {
            guard let k = MapKey(key), let i = index[k] else { return nil }
            return values[i]
        }
        set {
            guard let k = MapKey(key) else { return }
            if let i = index[k] {
                if let newValue { values[i] = newValue } else { remove(at: i) }
            } else if let newValue {
                index[k] = keys.count
                keys.append(key)
                values.append(newValue)
            }
        }
    }

    public subscript(string key: String) -> Value? {
        get { self[.string(key)] }
        set { self[.string(key)] = newValue }
    }

    public func contains(_ key: Value) -> Bool {
        guard let k = MapKey(key) else { return false }
        return index[k] != nil
    }

    public var entries: Zip2Sequence<[Value], [Value]> { zip(keys, values) }

    private mutating func remove(at i: Int) {
        keys.remove(at: i)
        values.remove(at: i)
        index = [:]
        for (j, k) in keys.enumerated() { index[MapKey(k)!] = j }
    }
}

/// The hashable form of a valid CEL map key.
public enum MapKey: Hashable, Sendable {
    case bool(Bool)
    case int(Int64)
    case uintBig(UInt64)  // only for values above Int64.max; smaller uints fold into .int
    case string(String)

    public init?(_ v: Value) {
        switch v {
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .uint(let u): self = u <= UInt64(Int64.max) ? .int(Int64(u)) : .uintBig(u)
        case .string(let s): self = .string(s)
        case .double(let d):
            // CEL: a double key that is integral looks up the equal int key.
            if d == d.rounded(), d >= -9.223372036854775808e18, d < 9.223372036854775808e18 {
                self = .int(Int64(d))
            } else { return nil }
        default: return nil
        }
    }
}
