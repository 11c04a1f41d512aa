/// Where a piece of policy text came from, so every error can say `file:line:col:`.
public struct FileLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }
    public var description: String { "\(file):\(line):\(column)" }
}

/// An expression as written in a policy or flow file. `origin` is the position of its
/// first character; `continuationIndent` is the column at which continuation lines
/// start (block scalars), so positions inside the expression map back to the file.
public struct ExpressionSource: Sendable, Hashable {
    public var text: String
    public var origin: FileLocation
    public var continuationColumn: Int

    public init(_ text: String, at origin: FileLocation, continuationColumn: Int? = nil) {
        self.text = text
        self.origin = origin
        self.continuationColumn = continuationColumn ?? origin.column
    }

    /// Maps a 1-based (line, column) inside the expression text to the file.
    public func location(line: Int, column: Int) -> FileLocation {
        if line <= 1 {
            return FileLocation(file: origin.file, line: origin.line, column: origin.column + column - 1)
        }
        return FileLocation(file: origin.file, line: origin.line + line - 1, column: continuationColumn + column - 1)
    }
}

/// A policy: GenAuth's "adaptive MFA security policy" node chain as data:
/// input parameters → data filtering → data statistics → policy judgment → return values.
public struct PolicyDefinition: Sendable {
    public var name: String
    public var location: FileLocation
    public var description: String?
    public var inputs: [InputDefinition]
    public var filter: ExpressionSource?
    public var statistics: [StatisticDefinition]
    public var judgment: ExpressionSource
    public var returns: [(name: String, expression: ExpressionSource)]

    public init(
        name: String, location: FileLocation, description: String? = nil, inputs: [InputDefinition] = [],
        filter: ExpressionSource? = nil, statistics: [StatisticDefinition] = [], judgment: ExpressionSource,
        returns: [(name: String, expression: ExpressionSource)] = []
    ) {
        self.name = name
        self.location = location
        self.description = description
        self.inputs = inputs
        self.filter = filter
        self.statistics = statistics
        self.judgment = judgment
        self.returns = returns
    }
}

/// A named, typed parameter computed from the event; expressions read it as `input.<name>`.
public struct InputDefinition: Sendable {
    public var name: String
    public var type: CELType
    public var value: ExpressionSource
    public var location: FileLocation
    public init(name: String, type: CELType, value: ExpressionSource, location: FileLocation) {
        self.name = name
        self.type = type
        self.value = value
        self.location = location
    }
}

public struct StatisticDefinition: Sendable {
    public var name: String
    public var location: FileLocation
    /// What the window is kept per: `event.originalIdentity`, `event.ip`, ...
    public var key: ExpressionSource
    /// The observed value; required by every aggregation but count.
    public var value: ExpressionSource?
    /// The statistic's own filter, applied after the policy filter.
    public var filter: ExpressionSource?
    public var window: WindowSpec
    /// Risk: named feature expressions, in order (`window.risk.features` holds the names).
    public var features: [(name: String, expression: ExpressionSource)]

    public init(
        name: String, location: FileLocation, key: ExpressionSource, value: ExpressionSource?,
        filter: ExpressionSource?, window: WindowSpec, features: [(name: String, expression: ExpressionSource)] = []
    ) {
        self.name = name
        self.location = location
        self.key = key
        self.value = value
        self.filter = filter
        self.window = window
        self.features = features
    }
}

public enum FlowTrigger: String, Sendable, Hashable, CaseIterable {
    /// Event-stream mode: UEBA events from Kafka.
    case ueba
    /// API mode: `POST /v1/evaluate`.
    case http
}

public enum MFAMethod: String, Sendable, Hashable, CaseIterable {
    case sms, email, otp, face
}

public enum FailMode: String, Sendable, Hashable, CaseIterable {
    /// A client that gets no answer in time lets the user through (the seed's rule).
    case open
    /// A client that gets no answer in time holds the user.
    case closed
}

/// Which apps a flow covers. `global` is the fallback for apps with no flow of their
/// own for that trigger, as the seed's user-pool-wide policy is.
public enum AppScope: Sendable, Hashable {
    case global
    case apps([String])
}

public enum BranchAction: Sendable, Hashable {
    case allow
    case deny
    case mfa([MFAMethod])

    public var name: String {
        switch self {
        case .allow: "allow"
        case .deny: "deny"
        case .mfa: "mfa"
        }
    }
}

public struct BranchDefinition: Sendable {
    public var when: ExpressionSource
    public var action: BranchAction
    public var returns: [(name: String, expression: ExpressionSource)]
    public var location: FileLocation
    public init(
        when: ExpressionSource, action: BranchAction,
        returns: [(name: String, expression: ExpressionSource)] = [], location: FileLocation
    ) {
        self.when = when
        self.action = action
        self.returns = returns
        self.location = location
    }
}

/// A flow: trigger → policies → ordered branches → publish an MFA event (or answer the HTTP call).
public struct FlowDefinition: Sendable {
    public var name: String
    public var location: FileLocation
    public var description: String?
    public var trigger: FlowTrigger
    public var apps: AppScope
    public var policies: [String]
    public var branches: [BranchDefinition]
    /// While the user has a pending challenge from this flow younger than this, a new
    /// MFA decision does not issue a new challenge (MFA fatigue).
    public var cooldown: Int64
    /// How long an issued challenge stays valid (event-time ms).
    public var expiry: Int64
    public var failMode: FailMode
    /// How long a device stays trusted after a challenge of this flow was verified with a
    /// code camfa checked (ms); nil: devices are not remembered (Factors.swift).
    public var rememberDevice: Int64?
    /// The mfaToken's `acr` claim for a challenge of this flow passed with camfa (OIDC's
    /// authentication context class, e.g. a URN the business servers agree on).
    public var acr: String?

    public init(
        name: String, location: FileLocation, description: String? = nil, trigger: FlowTrigger,
        apps: AppScope, policies: [String], branches: [BranchDefinition], cooldown: Int64,
        expiry: Int64, failMode: FailMode
    ) {
        self.name = name
        self.location = location
        self.description = description
        self.trigger = trigger
        self.apps = apps
        self.policies = policies
        self.branches = branches
        self.cooldown = cooldown
        self.expiry = expiry
        self.failMode = failMode
    }
}

/// An error in a policy set, always tied to a place in a file.
public struct PolicyError: Error, Sendable, CustomStringConvertible, Hashable {
    public enum Code: String, Sendable {
        case yamlSyntax, unknownKey, missingKey, invalidValue, duplicateName, unknownPolicy, expression, noFiles
    }
    public var code: Code
    public var location: FileLocation
    public var message: String
    public init(_ code: Code, at location: FileLocation, _ message: String) {
        self.code = code
        self.location = location
        self.message = message
    }
    public var description: String { "\(location): \(message)" }
}

public struct PolicyErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [PolicyError]
    public init(_ errors: [PolicyError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
