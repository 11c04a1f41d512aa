import CAMFACore
import CAMFADelivery
import Foundation

/// What an email or SMS factor's address may be: checked before it is sealed, so no
/// header (CR, LF) or SMTP command can ride in it.
enum CodeAddress {
    static func check(_ address: String, kind: Factor.Kind) throws(PipelineRequestError) {
        switch kind {
        case .email:
            let bytes = Array(address.utf8)
            let parts = address.split(separator: "@", omittingEmptySubsequences: false)
            // Printable ASCII without space, <, >, quotes or brackets: the forms SMTP
            // carries unquoted (RFC 5321 4.1.2), at most 254 bytes (RFC 5321 4.5.3.1.3).
            let allowed = bytes.allSatisfy { $0 > 0x20 && $0 < 0x7F && !"<>()[]\\,;:\"".utf8.contains($0) }
            guard bytes.count <= 254, allowed, parts.count == 2, !parts[0].isEmpty, parts[0].utf8.count <= 64,
                  parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix(".") else {
                throw PipelineRequestError(code: .invalid, message: "address must be one email address like user@example.com", field: "address")
            }
        case .sms:
            // E.164: +, a country code not starting with 0, at most 15 digits.
            let digits = address.utf8.dropFirst()
            guard address.hasPrefix("+"), (8...15).contains(digits.count), digits.first != UInt8(ascii: "0"),
                  digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
                throw PipelineRequestError(code: .invalid, message: "number must be in E.164 form, like +14155550123", field: "number")
            }
        case .face:
            // The user's id: the provider knows users by camfa's id (checked as an id already).
            return
        case .totp:
            throw PipelineRequestError(code: .invalid, message: "a totp factor has no address", field: "factor")
        }
    }

    /// Enough for a user to recognise the address, not to learn it: a***@example.com, +*******0123.
    static func masked(_ address: String, kind: Factor.Kind) -> String {
        switch kind {
        case .face:
            return "the face provider"
        case .email:
            guard let at = address.firstIndex(of: "@") else { return "***" }
            return String(address.prefix(1)) + "***" + address[at...]
        default:
            return "+" + String(repeating: "*", count: max(0, address.count - 5)) + address.suffix(4)
        }
    }
}

extension CodeSender {
    /// The sender `factors.email`, `factors.sms` and `factors.face` describe, their secrets
    /// read from their files (credentials resolved); nil when none is configured.
    public static func configured(_ f: Configuration.Factors, clock: @escaping @Sendable () -> Int64) throws(SecretError) -> CodeSender? {
        guard f.email != nil || f.sms != nil || f.face != nil else { return nil }
        func read(_ path: String, _ key: String) throws(SecretError) -> [UInt8] {
            guard var text = FileManager.default.contents(atPath: path).map({ String(decoding: $0, as: UTF8.self) }) else {
                throw SecretError(path: key, message: "cannot read \(path)")
            }
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
            guard !text.isEmpty else { throw SecretError(path: key, message: "\(path) is empty") }
            return Array(text.utf8)
        }
        var email: Email?
        if let e = f.email {
            let password = try e.passwordFile.map { (p: String) throws(SecretError) -> String in String(decoding: try read(p, "factors.email.passwordFile"), as: UTF8.self) }
            email = Email(smtp: SMTPClient.Settings(host: e.host, port: e.port, starttls: e.starttls, username: e.username, password: password,
                                                    caFile: e.caFile, timeout: Double(e.timeout) / 1000),
                          from: e.from, subject: e.subject)
        }
        func webhook(_ w: Configuration.Factors.Webhook?, _ key: String) throws(SecretError) -> Webhook? {
            guard let w, let url = URL(string: w.url) else { return nil }
            let secret = try read(w.secretFile, "factors.\(key).secretFile")
            guard secret.count >= 16 else { throw SecretError(path: "factors.\(key).secretFile", message: "the signing secret must have at least 16 bytes") }
            return Webhook(url: url, secret: secret, timeout: Double(w.timeout) / 1000)
        }
        return CodeSender(email: email, sms: try webhook(f.sms, "sms"), face: try webhook(f.face, "face"), clock: clock)
    }
}
