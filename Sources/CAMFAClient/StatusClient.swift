import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What a client does for a user when camfa does not answer in time (or answers 5xx):
/// `open` lets the user through (the seed's "disaster recovery" rule), `closed` holds them.
public enum FailMode: String, Sendable, Equatable, Codable {
    /// Let the user through, marked `failedOpen`.
    case open
    /// Hold the user.
    case closed
}

/// The answer of `StatusClient.checkUserStatus`: whether the user may go on, and why.
public struct UserStatus: Sendable, Equatable {
    /// Where the answer came from.
    public enum Source: Sendable, Equatable {
        /// camfa answered now.
        case camfa
        /// A recent answer, younger than the client's `cacheTTL`.
        case cache
        /// camfa did not answer usefully (the reason); the fail mode decided.
        case failMode(String)
    }

    /// A challenge that holds the user.
    public struct Challenge: Sendable, Equatable {
        /// The challenge id (the id of its MFA event).
        public var mfaEventId: String
        /// The flow that asked for it.
        public var flow: String
        /// The methods it offers, in order of preference.
        public var methods: [String]
    }

    /// The user asked about.
    public var user: String
    /// May the request go on: verified, or let through by the fail mode.
    public var allowed: Bool
    /// camfa's `mfaVerified` (false when it did not answer).
    public var mfaVerified: Bool
    /// Let through only because camfa did not answer and the fail mode is open.
    public var failedOpen: Bool
    /// The fail mode camfa reported for the user (the strictest of its pending flows).
    public var failMode: FailMode
    /// The pending challenges, for the business system's `AuthingMFA(mfaTriggerData).start()`.
    public var pending: [Challenge]
    /// Where the answer came from.
    public var source: Source
}

/// The seed's `checkUserStatus({originalId})` against `GET /v1/users/{id}/mfa-status`,
/// with the fail mode applied: when camfa is slow, down or answers 5xx, a user whose last
/// answer said `closed` stays held, anyone else goes through with `failedOpen: true`.
/// Recent answers are reused for `cacheTTL`, so a busy login path asks camfa once per user
/// per interval. Thread-safe; share one per process.
public final class StatusClient: Sendable {
    /// camfa's HTTP API (`http.address`).
    public let baseURL: URL
    private let apiKey: String
    private let session: URLSession
    private let cacheTTL: Double
    /// The fail mode for users camfa has never answered for (the seed's rule: open).
    private let unknownUserFailMode: FailMode
    private let memory: AnswerMemory

    /// - Parameters:
    ///   - baseURL: camfa's HTTP API.
    ///   - apiKey: a key with the `status` scope.
    ///   - cacheTTL: seconds a verified or pending answer is reused without asking camfa.
    ///   - unknownUserFailMode: the fail mode for a user camfa has not answered for yet.
    ///   - rememberedUsers: how many users' last answers are kept for the fail mode.
    ///   - session: the URLSession the calls go through (TLS settings, proxies).
    public init(baseURL: URL, apiKey: String, cacheTTL: Double = 2, unknownUserFailMode: FailMode = .open,
                rememberedUsers: Int = 100_000, session: URLSession = URLSession(configuration: .ephemeral)) {
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.cacheTTL = cacheTTL
        self.unknownUserFailMode = unknownUserFailMode
        self.session = session
        memory = AnswerMemory(capacity: rememberedUsers)
    }

    /// Never throws and never takes (much) longer than `timeout` seconds.
    public func checkUserStatus(_ user: String, timeout: Double = 0.5) async -> UserStatus {
        let now = Date()
        if let recent = memory.get(user), now.timeIntervalSince(recent.at) < cacheTTL {
            var s = recent.status
            s.source = .cache
            return s
        }
        let outcome = await fetch(user, timeout: timeout)
        switch outcome {
        case .success(let status):
            memory.put(user, Remembered(status: status, at: Date()))
            return status
        case .failure(let reason):
            let mode = memory.get(user)?.status.failMode ?? unknownUserFailMode
            return UserStatus(user: user, allowed: mode == .open, mfaVerified: false, failedOpen: mode == .open,
                              failMode: mode, pending: memory.get(user)?.status.pending ?? [], source: .failMode(reason))
        }
    }

    private enum Outcome: Sendable {
        case success(UserStatus)
        case failure(String)
    }

    private func fetch(_ user: String, timeout: Double) async -> Outcome {
        guard let url = APIRequest.url(baseURL, "/v1/users/\(APIRequest.segment(user))/mfa-status") else {
            return .failure("cannot build a URL from \(baseURL)")
        }
        switch await APIRequest.send(APIRequest.make("GET", url, apiKey: apiKey, timeout: timeout), session: session, timeout: timeout) {
        case .failed(let reason): return .failure(reason)
        case .answered(let status, let body): return Self.decode(user, status: status, data: body)
        }
    }

    private static func decode(_ user: String, status: Int, data: Data) -> Outcome {
        guard status == 200 else {
            // 4xx is the caller's mistake (key, scope, id), not camfa being down; it still
            // must not lock users out, so the fail mode decides, and the reason says why.
            return .failure("HTTP \(status)")
        }
        guard let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], let verified = o["mfaVerified"] as? Bool,
              let mode = (o["failMode"] as? String).flatMap(FailMode.init(rawValue:)) else {
            return .failure("an answer that is not an MFA status")
        }
        let pending = (o["pending"] as? [[String: Any]] ?? []).compactMap { c -> UserStatus.Challenge? in
            guard let id = c["mfaEventId"] as? String, let flow = c["flow"] as? String else { return nil }
            return UserStatus.Challenge(mfaEventId: id, flow: flow, methods: c["methods"] as? [String] ?? [])
        }
        return .success(UserStatus(user: user, allowed: verified, mfaVerified: verified, failedOpen: false, failMode: mode,
                                   pending: pending, source: .camfa))
    }
}

private struct Remembered: Sendable {
    var status: UserStatus
    var at: Date
}

/// The last answer per user, bounded: the oldest entries go first.
private final class AnswerMemory: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: Remembered] = [:]
    private var order: [String] = []
    private var head = 0
    private let capacity: Int

    init(capacity: Int) { self.capacity = max(1, capacity) }

    func get(_ user: String) -> Remembered? { lock.withLock { entries[user] } }

    func put(_ user: String, _ r: Remembered) {
        lock.withLock {
            if entries.updateValue(r, forKey: user) == nil { order.append(user) }
            while entries.count > capacity, head < order.count {
                entries.removeValue(forKey: order[head])
                head += 1
            }
            if head > 1024 && head * 2 > order.count {
                order.removeFirst(head)
                head = 0
            }
        }
    }
}
