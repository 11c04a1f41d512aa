/// A dynamically typed value: what events carry in custom fields, what expressions
/// compute, and what statistics and decisions report. CEL's value model, minus
/// protobuf messages.
public enum Value: Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case bytes([UInt8])
    case list([Value])
    case map(ValueMap)
    /// Nanoseconds.
    case duration(Int64)
    /// Nanoseconds since the Unix epoch, UTC.
    case timestamp(Int64)
    /// A CEL type value (`type(x)`), by its CEL name: "int", "string", "list", ...
    case type(String)
    /// A host object with a declared schema (the event, the user, statistics);
    /// fields are resolved to indexes when an expression is compiled.
    case object(any ValueObject)
}

/// Host objects expose fields by the index their schema gives them, so the hot path
/// never hashes a field name.
public protocol ValueObject: Sendable {
    var schema: ObjectSchema { get }
    /// nil means the field is absent (`has(x.f)` is false, selecting it is an error).
    func field(at index: Int) -> Value?
}

/// Declares the fields of a host object and their CEL types.
public final class ObjectSchema: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    public let fieldNames: [String]
    public let fieldTypes: [CELType]
    private let indexByName: [String: Int]

    public init(name: String, fields: [(String, CELType)]) {
        self.name = name
        self.fieldNames = fields.map(\.0)
        self.fieldTypes = fields.map(\.1)
        var index: [String: Int] = [:]
        for (i, f) in fields.enumerated() { index[f.0] = i }
        self.indexByName = index
    }

    public func index(of field: String) -> Int? { indexByName[field] }
    public var description: String { name }
    public static func == (a: ObjectSchema, b: ObjectSchema) -> Bool { a === b }
    public func hash(into h: inout Hasher) { h.combine(ObjectIdentifier(self)) }
}

/// CEL's static types, as far as the engine's subset needs them.
public indirect enum CELType: Sendable, Hashable, CustomStringConvertible {
    case dyn
    case null
    case bool
    case int
    case uint
    case double
    case string
    case bytes
    case duration
    case timestamp
    case list(CELType)
    case map(CELType, CELType)
    case object(ObjectSchema)
    case type

    public var description: String {
        switch self {
        case .dyn: "dyn"
        case .null: "null_type"
        case .bool: "bool"
        case .int: "int"
        case .uint: "uint"
        case .double: "double"
        case .string: "string"
        case .bytes: "bytes"
        case .duration: "google.protobuf.Duration"
        case .timestamp: "google.protobuf.Timestamp"
        case .list(let e): "list(\(e))"
        case .map(let k, let v): "map(\(k), \(v))"
        case .object(let s): s.name
        case .type: "type"
        }
    }
}
