/// A map that keeps insertion order, so that anything serialized from it (decisions,
/// state dumps) is byte-identical for the same input. Keys follow CEL's rules: string,
/// int, uint and bool; numerically equal int and uint keys are the same key.
public struct ValueMap: Sendable {
    public private(set) var keys: [Value] = []
    public private(set) var values: [Value] = []
    /// Built only past `linearLimit` entries: most maps the engine sees (custom fields,
    /// profiles, returns) are small, and a linear scan over them is cheaper than
    /// hashing, besides saving a dictionary allocation per map.
    private var index: [MapKey: Int]? = nil

    @usableFromInline static let linearLimit = 8

    public init() {}

    public init(_ pairs: [(String, Value)]) {
        keys.reserveCapacity(pairs.count)
        values.reserveCapacity(pairs.count)
        for (k, v) in pairs { self[.string(k)] = v }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }

    public mutating func reserveCapacity(_ n: Int) {
        keys.reserveCapacity(n)
        values.reserveCapacity(n)
    }

    private func position(of k: MapKey) -> Int? {
        if let index { return index[k] }
        for i in keys.indices where k.matches(keys[i]) { return i }
        return nil
    }

    /// nil when the key is not a valid map key type.
    public subscript(key: Value) -> Value? {
        get {
            guard let k = MapKey(key), let i = position(of: k) else { return nil }
            return values[i]
        }
        set {
            guard let k = MapKey(key) else { return }
            if let i = position(of: k) {
                if let newValue { values[i] = newValue } else { remove(at: i) }
            } else if let newValue {
                if index != nil {
                    index![k] = keys.count
                } else if keys.count == Self.linearLimit {
                    var d = [MapKey: Int](minimumCapacity: keys.count * 2)
                    for (j, key) in keys.enumerated() { d[MapKey(key)!] = j }
                    d[k] = keys.count
                    index = d
                }
                keys.append(key)
                values.append(newValue)
            }
        }
    }

    /// `self[.string(key)]` without building a Value or a MapKey for the probe, and
    /// without copying the stored keys while scanning. Strings compare with Swift's
    /// `==`, as `MapKey.matches` and the hashed index do.
    @inline(__always)
    public func value(forString key: String) -> Value? {
        if let index { return index[.string(key)].map { values[$0] } }
        for i in keys.indices {
            if case .string(let s) = keys[i], s == key { return values[i] }
        }
        return nil
    }

    public subscript(string key: String) -> Value? {
        get { value(forString: key) }
        set { self[.string(key)] = newValue }
    }

    public func contains(_ key: Value) -> Bool {
        guard let k = MapKey(key) else { return false }
        return position(of: k) != nil
    }

    public var entries: Zip2Sequence<[Value], [Value]> { zip(keys, values) }

    private mutating func remove(at i: Int) {
        keys.remove(at: i)
        values.remove(at: i)
        guard index != nil else { return }
        if keys.count <= Self.linearLimit {
            index = nil
            return
        }
        var d = [MapKey: Int](minimumCapacity: keys.count)
        for (j, k) in keys.enumerated() { d[MapKey(k)!] = j }
        index = d
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

    /// `self == MapKey(stored)` for a stored (valid) key, without building a MapKey.
    /// Strings compare with Swift's `==`, as the hashed index does.
    @inline(__always)
    func matches(_ stored: Value) -> Bool {
        switch (self, stored) {
        case (.string(let a), .string(let b)): return a == b
        case (.int(let a), .int(let b)): return a == b
        case (.int(let a), .uint(let b)): return a >= 0 && UInt64(a) == b
        case (.uintBig(let a), .uint(let b)): return a == b
        case (.bool(let a), .bool(let b)): return a == b
        case (_, .double): return MapKey(stored) == self
        default: return false
        }
    }
}
