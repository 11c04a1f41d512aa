/// Why a message is not a valid UEBA event. The consumer puts `code` and `message` in
/// the dead-letter record's reason header, so messages name the field and the problem
/// but never quote the field's value (no personal data in logs or headers).
public struct EventDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, CaseIterable {
        /// Zero bytes, or only whitespace.
        case empty
        /// Larger than the decoder's size limit; checked before any parsing.
        case tooLarge
        /// Malformed UTF-8, or a `\u` escape that is a lone UTF-16 surrogate.
        case invalidUTF8
        /// Not JSON text at all (syntax error, trailing data).
        case notJSON
        /// Valid JSON, but the top level is not an object.
        case notAnObject
        /// A required field is absent.
        case missingField
        /// A field has the wrong JSON type.
        case wrongType
        /// A field has the right type but an unacceptable value (empty identity,
        /// negative time, latitude beyond ±90, unknown enrichment field, ...).
        case invalidValue
        /// The same key twice in one object, or in both the top level and `custom`.
        case duplicateKey
        /// Nested deeper than the JSON parser's limit.
        case tooDeep
        /// A string longer than the intake's limit (`EventLimits`): the identity, a seed
        /// field or a custom value that would otherwise become a key of unbounded size.
        case tooLong
    }

    public var code: Code
    /// Path of the offending field: `requestDate`, `geo.latitude`, `custom.roles[2]`;
    /// empty when the problem is the message as a whole.
    public var field: String
    /// Human-readable, starts with the field path: `requestDate: expected an integer
    /// (epoch milliseconds), got a string`.
    public var message: String
    /// Where the problem was detected, when it is tied to a position in the input.
    public var byteOffset: Int?

    public init(code: Code, field: String, message: String, byteOffset: Int? = nil) {
        self.code = code
        self.field = field
        self.message = message
        self.byteOffset = byteOffset
    }

    /// `field: problem`, or just the problem for whole-message errors.
    init(_ code: Code, _ field: String, _ problem: String, at offset: Int? = nil) {
        self.init(code: code, field: field, message: field.isEmpty ? problem : "\(field): \(problem)", byteOffset: offset)
    }

    /// A JSON syntax or encoding error found inside `field` (empty for the top level).
    init(_ e: JSONError, under field: String) {
        let path = field.isEmpty ? e.path : JSONError.join(field, e.path)
        let code: Code =
            switch e.code {
            case .empty: .empty
            case .invalidUTF8, .loneSurrogate: .invalidUTF8
            case .tooDeep: .tooDeep
            case .duplicateKey: .duplicateKey
            case .numberOutOfRange: .invalidValue
            case .unexpectedEnd, .unexpectedCharacter, .invalidEscape, .controlCharacter,
                .invalidNumber, .trailingData:
                .notJSON
            }
        self.init(code, path, "\(e.message) at byte \(e.byteOffset)", at: e.byteOffset)
    }

    public var description: String { message }
}
