/// A JSON text that could not be parsed. Messages never quote the offending text, so
/// they can go into logs and dead-letter headers without leaking a user's data.
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// No JSON value at all (zero bytes or only whitespace).
        case empty
        /// The text ends inside a value.
        case unexpectedEnd
        /// A byte that cannot start or continue the value at this point.
        case unexpectedCharacter
        /// Malformed UTF-8 (overlong, encoded surrogate, truncated, above U+10FFFF).
        case invalidUTF8
        /// A backslash escape JSON does not define, or a `\u` with bad hex digits.
        case invalidEscape
        /// A `\u` escape of a UTF-16 surrogate without its partner: not a Unicode scalar.
        case loneSurrogate
        /// An unescaped control character (U+0000 to U+001F) inside a string.
        case controlCharacter
        /// A number that does not follow JSON's grammar (leading zeros, `1.`, `-`).
        case invalidNumber
        /// A number whose magnitude overflows a Double.
        case numberOutOfRange
        /// Containers nested deeper than the parser's limit.
        case tooDeep
        /// An object names the same key twice.
        case duplicateKey
        /// Something other than whitespace after the top-level value.
        case trailingData
    }

    public var code: Code
    public var message: String
    /// Offset of the first byte the problem was detected at.
    public var byteOffset: Int
    /// Where in the document, e.g. `roles[2]` or `a.b`; empty for the top level.
    public var path: String

    public init(code: Code, message: String, byteOffset: Int, path: String = "") {
        self.code = code
        self.message = message
        self.byteOffset = byteOffset
        self.path = path
    }

    public var description: String {
        path.isEmpty
            ? "\(message) (byte \(byteOffset))"
            : "\(path): \(message) (byte \(byteOffset))"
    }

    /// Errors are built deep inside the parse and learn their path while the stack
    /// unwinds, so the success path never pays for tracking where it is.
    func inside(key: String) -> JSONError {
        var e = self
        e.path = JSONError.join(key, path)
        return e
    }

    func inside(index: Int) -> JSONError {
        var e = self
        e.path = JSONError.join("[\(index)]", path)
        return e
    }

    static func join(_ head: String, _ tail: String) -> String {
        if tail.isEmpty { return head }
        if tail.utf8.first == UInt8(ascii: "[") { return head + tail }
        return head + "." + tail
    }
}
