/// Why enrichment could not be set up. Every message names the file, zone or entry at
/// fault, because an operator reads it in a startup log with nothing else to go on.
public struct EnrichmentError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The file exists but is not a usable database (libmaxminddb refused it, or a
        /// lookup hit corrupt data).
        case corruptDatabase = "corrupt_database"
        /// The UA rules file is not valid YAML or not in uap-core's shape.
        case invalidRules = "invalid_rules"
        /// A rule's regular expression does not compile with PCRE2.
        case invalidRegex = "invalid_regex"
        /// A network-zone entry is not a valid CIDR.
        case invalidCIDR = "invalid_cidr"
        /// An address given to a lookup is not an IPv4 or IPv6 literal.
        case invalidAddress = "invalid_address"
        /// A file could not be read for a reason other than its absence.
        case unreadableFile = "unreadable_file"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
