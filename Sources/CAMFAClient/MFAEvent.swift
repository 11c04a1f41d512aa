import Foundation

/// An `authing.security.mfa` event (schemas/mfa-event.schema.json) as a subscriber reads it:
/// the fields a service acts on, typed, and the whole envelope as published.
public struct MFAEvent: Sendable, Equatable {
    /// What the subscriber does with the user's session.
    public enum Action: String, Sendable, Equatable, CaseIterable {
        /// Challenge the user with the first of `methods` it supports; hold the session until then.
        case mfa
        /// End the session: a flow refused the event.
        case deny
        /// Let a held session go: the challenge `challengeId` no longer holds the user.
        case cleared
    }

    /// The event id: the challenge id for `mfa`; the same on every redelivery.
    public var id: String
    /// The user (the envelope's `subject`).
    public var originalIdentity: String
    /// The app of the triggering event.
    public var appId: String?
    /// The flow that decided.
    public var flow: String?
    /// What the subscriber does with the user's session.
    public var action: Action
    /// mfa: in order of preference; cleared: the verified method, if any.
    public var methods: [String]
    /// mfa: when the challenge stops being valid.
    public var expiresAt: Date?
    /// mfa and deny: what a status check does when camfa does not answer.
    public var failMode: FailMode?
    /// cleared: the challenge (the id of its mfa event) that stopped holding the user.
    public var challengeId: String?
    /// cleared: `verified` or `release`.
    public var clearedBy: String?
    /// The CloudEvents envelope, byte for byte as camfa published it.
    public var envelope: Data

    /// An event as `init?(json:)` reads it; for tests and test doubles.
    public init(id: String, originalIdentity: String, appId: String? = nil, flow: String? = nil, action: Action,
                methods: [String] = [], expiresAt: Date? = nil, failMode: FailMode? = nil, challengeId: String? = nil,
                clearedBy: String? = nil, envelope: Data = Data()) {
        self.id = id
        self.originalIdentity = originalIdentity
        self.appId = appId
        self.flow = flow
        self.action = action
        self.methods = methods
        self.expiresAt = expiresAt
        self.failMode = failMode
        self.challengeId = challengeId
        self.clearedBy = clearedBy
        self.envelope = envelope
    }

    /// nil when `json` is not an MFA event envelope (no id, subject or known data.action).
    public init?(json: Data) {
        guard let e = try? JSONSerialization.jsonObject(with: json) as? [String: Any],
              let id = e["id"] as? String, !id.isEmpty, let subject = e["subject"] as? String,
              let data = e["data"] as? [String: Any], let action = (data["action"] as? String).flatMap(Action.init(rawValue:)) else { return nil }
        self.init(id: id, originalIdentity: subject, appId: data["appId"] as? String, flow: data["flow"] as? String, action: action,
                  methods: data["methods"] as? [String] ?? [], expiresAt: (data["expiresAt"] as? String).flatMap(APITime.parse),
                  failMode: (data["failMode"] as? String).flatMap(FailMode.init(rawValue:)), challengeId: data["challengeId"] as? String,
                  clearedBy: data["clearedBy"] as? String, envelope: json)
    }
}

/// camfa's timestamps: RFC 3339 in UTC with milliseconds (`2026-01-01T00:00:00.000Z`).
enum APITime {
    static func parse(_ text: String) -> Date? {
        (try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
            ?? (try? Date(text, strategy: Date.ISO8601FormatStyle()))
    }
}
