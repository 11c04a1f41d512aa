import CAMFACore
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A one-time code on its way to a user (issue 25): by email over SMTP, or by SMS
/// through the provider's webhook.
public struct CodeMessage: Sendable, Equatable {
    public enum Channel: String, Sendable {
        /// `face`: the code goes to the face provider, which checks the user and calls back.
        case email, sms, face
    }

    public enum Purpose: String, Sendable {
        /// The first code of a new factor.
        case confirmation
        /// A code for a challenge.
        case challenge
    }

    public var channel: Channel
    /// The email address or E.164 number.
    public var to: String
    public var code: String
    public var user: String
    public var purpose: Purpose
    /// The challenge's MFA event id, for `.challenge`.
    public var mfaEventId: String?
    /// Epoch ms.
    public var expiresAt: Int64

    public init(channel: Channel, to: String, code: String, user: String, purpose: Purpose, mfaEventId: String?, expiresAt: Int64) {
        self.channel = channel
        self.to = to
        self.code = code
        self.user = user
        self.purpose = purpose
        self.mfaEventId = mfaEventId
        self.expiresAt = expiresAt
    }

    /// The text the user reads.
    public func text(now: Int64) -> String {
        if channel == .face { return "Look at the camera to confirm it is you." }
        let minutes = max(1, (expiresAt - now + 59_999) / 60_000)
        return "Your sign-in code is \(code). It expires in \(minutes) minute\(minutes == 1 ? "" : "s"). If you did not just sign in, ignore this message and tell your administrator."
    }
}

/// Sends codes; one per configured channel. SMTP exchanges run on a queue of their own,
/// never on the caller's task or the poll loop.
public final class CodeSender: Sendable {
    public struct Email: Sendable, Equatable {
        public var smtp: SMTPClient.Settings
        /// The From header; its address (inside <…>, or all of it) is the envelope sender.
        public var from: String
        public var subject: String

        public init(smtp: SMTPClient.Settings, from: String, subject: String) {
            self.smtp = smtp
            self.from = from
            self.subject = subject
        }
    }

    public struct Webhook: Sendable, Equatable {
        public var url: URL
        public var secret: [UInt8]
        /// Seconds.
        public var timeout: Double

        public init(url: URL, secret: [UInt8], timeout: Double) {
            self.url = url
            self.secret = secret
            self.timeout = timeout
        }
    }

    public let email: Email?
    public let sms: Webhook?
    /// The face provider (`factors.face`): its webhook, and the secret its verdicts are
    /// signed with.
    public let face: Webhook?
    private let clock: @Sendable () -> Int64
    private let queue = DispatchQueue(label: "camfa.smtp")

    public init(email: Email?, sms: Webhook?, face: Webhook? = nil, clock: @escaping @Sendable () -> Int64) {
        self.email = email
        self.sms = sms
        self.face = face
        self.clock = clock
    }

    public func sends(_ channel: CodeMessage.Channel) -> Bool {
        switch channel {
        case .email: email != nil
        case .sms: sms != nil
        case .face: face != nil
        }
    }

    public func send(_ message: CodeMessage) async throws(DeliveryError) {
        switch message.channel {
        case .email:
            guard let email else { throw DeliveryError(code: .notConfigured, message: "factors.email is not configured") }
            let mail = Self.mail(message, from: email.from, subject: email.subject, now: clock())
            let result: Result<Void, DeliveryError> = await withCheckedContinuation { c in
                queue.async {
                    do throws(DeliveryError) {
                        try SMTPClient(email.smtp).send(from: Self.address(email.from), to: message.to, message: mail)
                        c.resume(returning: .success(()))
                    } catch {
                        c.resume(returning: .failure(error))
                    }
                }
            }
            try result.get()
        case .sms:
            guard let sms else { throw DeliveryError(code: .notConfigured, message: "factors.sms is not configured") }
            try await Self.post(message, to: sms, now: clock())
        case .face:
            guard let face else { throw DeliveryError(code: .notConfigured, message: "factors.face is not configured") }
            try await Self.post(message, to: face, now: clock())
        }
    }

    /// The bare address of a From header.
    static func address(_ from: String) -> String {
        guard let open = from.lastIndex(of: "<"), let close = from.lastIndex(of: ">"), open < close else {
            return from.trimmingCharacters(in: .whitespaces)
        }
        return String(from[from.index(after: open)..<close])
    }

    /// An RFC 5322 message: plain text, no personal data beyond the recipient.
    static func mail(_ m: CodeMessage, from: String, subject: String, now: Int64) -> String {
        let date = DateFormatter()
        date.locale = Locale(identifier: "en_US_POSIX")
        date.timeZone = TimeZone(identifier: "UTC")
        date.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        return [
            "From: \(from)", "To: <\(m.to)>", "Subject: \(subject)",
            "Date: \(date.string(from: Date(timeIntervalSince1970: Double(now) / 1000)))",
            "Message-ID: <\(UUID().uuidString)@camfa>", "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit", "Auto-Submitted: auto-generated",
            "", m.text(now: now), "",
        ].joined(separator: "\r\n")
    }

    /// The webhook's body (schemas/openapi.yaml, `CodeDelivery`).
    public static func body(_ m: CodeMessage, now: Int64) -> Data {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var o: [String: Any] = [
            "type": "camfa.code", "channel": m.channel.rawValue, "to": m.to, "code": m.code, "user": m.user,
            "purpose": m.purpose.rawValue, "expiresAt": f.string(from: Date(timeIntervalSince1970: Double(m.expiresAt) / 1000)),
            "text": m.text(now: now),
        ]
        if let id = m.mfaEventId { o["mfaEventId"] = id }
        // Where the face provider posts its verdict (FaceVerdict), relative to camfa's URL.
        if m.channel == .face { o["callback"] = "/v1/face/verdicts" }
        return (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])) ?? Data()
    }

    /// `Camfa-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: the
    /// receiver recomputes it and refuses a time far from its own (a replayed request).
    public static func signature(body: Data, secret: [UInt8], unixSeconds: Int64) -> String {
        "t=\(unixSeconds),v1=" + mac(body: body, secret: secret, unixSeconds: unixSeconds).map { String(format: "%02x", $0) }.joined()
    }

    private static func mac(body: Data, secret: [UInt8], unixSeconds: Int64) -> [UInt8] {
        HMACSHA256(key: secret).authenticate(Array("\(unixSeconds).".utf8) + [UInt8](body))
    }

    /// Whether `header` is a valid `Camfa-Signature` of `body` under `secret`, made within
    /// `tolerance` seconds of `now` (either way): what a provider's signed callback must carry.
    public static func signatureIsValid(_ header: String, body: Data, secret: [UInt8], now unixSeconds: Int64, tolerance: Int64 = 300) -> Bool {
        var t: Int64?, v1: [UInt8]?
        for part in header.split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2 else { return false }
            if kv[0] == "t" { t = Int64(kv[1]) }
            if kv[0] == "v1" { v1 = Array(kv[1].lowercased().utf8) }
        }
        // No arithmetic on the caller's t (t = Int64.min would overflow a difference), and
        // the window's ends saturate.
        let (low, under) = unixSeconds.subtractingReportingOverflow(tolerance)
        let (high, over) = unixSeconds.addingReportingOverflow(tolerance)
        guard let t, let v1, t >= (under ? .min : low), t <= (over ? .max : high) else { return false }
        let expected = Array(mac(body: body, secret: secret, unixSeconds: t).map { String(format: "%02x", $0) }.joined().utf8)
        return HMACSHA256.equal(v1, expected)
    }

    public static let signatureHeader = "Camfa-Signature"

    static func post(_ m: CodeMessage, to hook: Webhook, now: Int64) async throws(DeliveryError) {
        let body = Self.body(m, now: now)
        var request = URLRequest(url: hook.url)
        request.httpMethod = "POST"
        request.httpBody = body
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue(signature(body: body, secret: hook.secret, unixSeconds: now / 1000), forHTTPHeaderField: signatureHeader)
        request.timeoutInterval = hook.timeout
        let status: Int
        do {
            let (_, response) = try await URLSession.shared.data(for: request)
            guard let http = response as? HTTPURLResponse else { throw DeliveryError(code: .protocolError, message: "not an HTTP answer") }
            status = http.statusCode
        } catch let e as DeliveryError {
            throw e
        } catch {
            throw DeliveryError(code: .unreachable, message: "\(hook.url.host ?? "the webhook") did not answer: \(error.localizedDescription)")
        }
        guard (200..<300).contains(status) else {
            throw DeliveryError(code: .refused, message: "\(hook.url.host ?? "the webhook") answered \(status)", status: status)
        }
    }
}
