/// Size limits a producer's event must meet before it reaches the engine (issue 22: an
/// `originalIdentity` of a few hundred KB made an MFA event larger than the producer's
/// limit, and every string can become a statistic's key, kept for the window's length).
/// The daemon's intake and API mode apply them (`engine.maxIdentityBytes`,
/// `engine.maxFieldBytes`); the JSON contract itself has no such bound.
public struct EventLimits: Sendable, Equatable {
    /// UTF-8 bytes of `originalIdentity`.
    public var maxIdentityBytes = 256
    /// UTF-8 bytes of every other string field: the seed's, and custom values (top-level
    /// strings and strings in top-level lists).
    public var maxFieldBytes = 2048

    public init(maxIdentityBytes: Int = 256, maxFieldBytes: Int = 2048) {
        self.maxIdentityBytes = maxIdentityBytes
        self.maxFieldBytes = maxFieldBytes
    }
}

extension UEBAEvent {
    /// The first field over `limits`, as the error a decoder would give; nil when none is.
    public func violation(of limits: EventLimits) -> EventDecodingError? {
        if originalIdentity.utf8.count > limits.maxIdentityBytes {
            return EventDecodingError(.tooLong, "originalIdentity",
                                      "\(originalIdentity.utf8.count) bytes exceeds engine.maxIdentityBytes \(limits.maxIdentityBytes)")
        }
        let seed: [(String, String?)] = [
            ("appId", appId), ("ip", ip), ("city", city), ("province", province), ("country", country), ("ua", ua),
            ("deviceType", deviceType), ("systemType", systemType), ("browserType", browserType), ("behaviorType", behaviorType),
            ("behaviorResult", behaviorResult), ("resourcesType", resourcesType), ("actionType", actionType),
            ("loginType", loginType), ("networkZone", networkZone),
        ]
        for (name, value) in seed {
            if let v = value, v.utf8.count > limits.maxFieldBytes { return tooLong(name, v.utf8.count, limits) }
        }
        for (k, v) in custom.entries {
            guard case .string(let key) = k else { continue }
            switch v {
            case .string(let s) where s.utf8.count > limits.maxFieldBytes:
                return tooLong("custom.\(key)", s.utf8.count, limits)
            case .list(let items):
                for (i, item) in items.enumerated() {
                    if case .string(let s) = item, s.utf8.count > limits.maxFieldBytes {
                        return tooLong("custom.\(key)[\(i)]", s.utf8.count, limits)
                    }
                }
            default: break
            }
        }
        return nil
    }

    private func tooLong(_ field: String, _ bytes: Int, _ limits: EventLimits) -> EventDecodingError {
        EventDecodingError(.tooLong, field, "\(bytes) bytes exceeds engine.maxFieldBytes \(limits.maxFieldBytes)")
    }
}
