import CAMFACore
import CAMFADaemon
import Foundation
import HTTPTypes
import Hummingbird
import Metrics
import NIOCore

/// The hosted challenge page (`http.challengePage`): for teams without an MFA front end of
/// their own, `GET /challenge/{mfaEventId}?user=ID` shows the challenge's methods that camfa
/// checks itself, sends email and SMS codes, and checks the code the user types, through
/// the same backend calls as `/v1/challenges/{id}/send` and `/verify`.
///
/// Plain HTML forms, no script and no external asset: the page works with scripts off and
/// its Content-Security-Policy allows nothing but its own inline style and form posts to
/// itself (and to `returnURL`). It needs no API key, since the user holds none; what stops a
/// guesser is what stops one on the API: challenge ids are unguessable (keyed by the daemon
/// secret), a challenge takes `factors.attemptsPerChallenge` codes and the user is locked out
/// after `factors.failuresPerUser`.
enum ChallengePage {
    /// The methods the page offers: those camfa checks (face needs the provider's own UI).
    static let methods: [MFAMethod] = [.otp, .email, .sms]

    struct Form: Equatable {
        var user = ""
        var method: MFAMethod?
        var code = ""
        /// `send` (a code by email or SMS) or `verify`.
        var action = ""
    }

    /// `application/x-www-form-urlencoded`, the fields the page posts; anything else is 400.
    static func form(_ body: [UInt8]) throws(APIError) -> Form {
        var f = Form()
        let text = String(decoding: body, as: UTF8.self)
        for pair in text.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(kv[0]), let value = kv.count == 2 ? decode(kv[1]) : "" else {
                throw APIError(status: .badRequest, code: "invalid", message: "the form is not URL-encoded")
            }
            switch name {
            case "user": f.user = value
            case "code": f.code = value.trimmingCharacters(in: .whitespaces)
            case "action": f.action = value
            case "method":
                guard let m = MFAMethod(rawValue: value), methods.contains(m) else {
                    throw APIError(status: .badRequest, code: "invalid", message: "method must be one of otp, email, sms", field: "method")
                }
                f.method = m
            default: throw APIError(status: .badRequest, code: "invalid", message: "unknown form field", field: String(name.prefix(64)))
            }
        }
        guard !f.user.isEmpty else { throw APIError(status: .badRequest, code: "invalid", message: "user is required", field: "user") }
        guard f.method != nil else { throw APIError(status: .badRequest, code: "invalid", message: "method is required", field: "method") }
        guard ["send", "verify"].contains(f.action) else {
            throw APIError(status: .badRequest, code: "invalid", message: "action must be send or verify", field: "action")
        }
        return f
    }

    private static func decode(_ s: Substring) -> String? {
        s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    static func label(_ m: MFAMethod) -> String {
        switch m {
        case .otp: "Authenticator app"
        case .email: "Code by email"
        case .sms: "Code by text message"
        case .face: "Face"
        }
    }

    /// The page with the challenge's form; `notice` (a sent code) and `problem` (a refused
    /// code) are shown above it.
    static func challenge(id: String, user: String, methods: [MFAMethod], selected: MFAMethod?, notice: String? = nil, problem: String? = nil) -> String {
        let action = "/challenge/\(escape(percentEncoded(id)))"
        var radios = ""
        for (i, m) in methods.enumerated() {
            let checked = (selected ?? methods.first) == m ? " checked" : ""
            radios += #"<label><input type="radio" name="method" value="\#(m.rawValue)" id="method-\#(m.rawValue)"\#(checked)\#(i == 0 ? " required" : "")> \#(label(m))</label>"#
        }
        let sendable = methods.contains { $0 == .email || $0 == .sms }
        return page(title: "Confirm it is you", body: """
            <h1>Confirm it is you</h1>
            <p>Your sign-in needs a second check. Choose how, then enter the 6-digit code.</p>
            \(notice.map { #"<p class="notice" id="notice">\#(escape($0))</p>"# } ?? "")
            \(problem.map { #"<p class="problem" id="problem" role="alert">\#(escape($0))</p>"# } ?? "")
            <form method="post" action="\(action)">
            <input type="hidden" name="user" value="\(escape(user))">
            <fieldset><legend>Method</legend>\(radios)</fieldset>
            \(sendable ? #"<p><button type="submit" name="action" value="send" id="send" formnovalidate>Send me a code</button> (email and text message)</p>"# : "")
            <p><label for="code">Code</label> <input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6"></p>
            <p><button type="submit" name="action" value="verify" id="verify">Verify</button></p>
            </form>
            """)
    }

    static func verified(token: String, returnURL: String?) -> String {
        let next = returnURL.map {
            #"<form method="post" action="\#(escape($0))"><input type="hidden" name="mfaToken" value="\#(escape(token))"><button type="submit" id="continue">Continue</button></form>"#
        } ?? "<p>You can close this page and return to the application.</p>"
        return page(title: "Verified", body: """
            <h1 id="verified">Verified</h1>
            <p>Thank you: your sign-in is confirmed.</p>
            \(next)
            <p hidden><output id="mfaToken">\(escape(token))</output></p>
            """)
    }

    static func closed() -> String {
        page(title: "No open check", body: """
            <h1 id="closed">No open check</h1>
            <p>This sign-in check is not open: it was completed, it expired, or the link is wrong. Sign in again to get a new one.</p>
            """)
    }

    private static func page(title: String, body: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(escape(title))</title>
        <style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;line-height:1.5}
        fieldset{border:1px solid #ccc;padding:.5rem 1rem}label{display:block;margin:.25rem 0}input#code{font-size:1.4rem;letter-spacing:.3rem;width:9rem}
        button{font-size:1rem;padding:.4rem 1rem}.problem{color:#a00}.notice{color:#060}</style></head>
        <body>\(body)</body></html>
        """
    }

    private static func percentEncoded(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? s
    }

    /// What a refused send or code tells the user; no internals, no other user's data.
    static func problem(_ e: PipelineRequestError) -> String {
        switch e.code {
        case .wrongCode: "That code is not right. Try again."
        case .replayedCode: "That code was used already. Wait for the next one."
        case .expiredCode: "That code expired. Send a new one."
        case .noCode: "No code was sent for this check yet. Send one first."
        case .tooManyAttempts: "Too many wrong codes for this check. Sign in again."
        case .lockedOut: "Too many wrong codes. Try again later."
        case .tooManySends: "No more codes can be sent for this check. Sign in again."
        case .noFactor: "This method is not set up for your account. Choose another."
        case .notConfigured: "This method is not available. Choose another."
        case .deliveryFailed: "The code could not be sent. Try again or choose another method."
        case .unknownChallenge, .expiredChallenge: "This check is not open any more. Sign in again."
        default: "The check is not available right now. Try again in a moment."
        }
    }

    /// Headers of every page: nothing loads but the page itself, nothing frames it, no
    /// cache keeps a token, and no referrer leaks the challenge id.
    static func headers(returnURL: String?) -> HTTPFields {
        var formAction = "'self'"
        if let returnURL, let u = URL(string: returnURL), let scheme = u.scheme, let host = u.host {
            formAction += " \(scheme)://\(host)\(u.port.map { ":\($0)" } ?? "")"
        }
        return [
            .contentType: "text/html; charset=utf-8",
            .contentSecurityPolicy: "default-src 'none'; style-src 'unsafe-inline'; form-action \(formAction); frame-ancestors 'none'; base-uri 'none'",
            HTTPField.Name("X-Frame-Options")!: "DENY",
            HTTPField.Name("Referrer-Policy")!: "no-referrer",
            .cacheControl: "no-store",
            HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        ]
    }

    static func response(_ status: HTTPResponse.Status, _ html: String, returnURL: String?) -> Response {
        Response(status: status, headers: headers(returnURL: returnURL), body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }
}

extension Routes {
    func registerChallengePage(on router: Router<BasicRequestContext>) {
        let returnURL = http.challengePageReturnURL
        /// The user's pending challenge `id` and the methods the page offers for it.
        @Sendable func open(_ request: Request, body: [UInt8], id: String, user: String) async throws -> (PendingChallenge, [MFAMethod])? {
            let status = try await call(request, body) { () async throws(PipelineRequestError) in
                try await backend.mfaStatus(user: user, timeout: timeout)
            }
            guard let pending = status.pending.first(where: { $0.id == id }) else { return nil }
            let methods = ChallengePage.methods.filter(pending.methods.contains)
            return methods.isEmpty ? nil : (pending, methods)
        }
        @Sendable func closed() -> Response { ChallengePage.response(.notFound, ChallengePage.closed(), returnURL: returnURL) }

        router.get("/challenge/:mfaEventId") { request, context in
            let id = try pathParameter(context, "mfaEventId")
            guard let user = request.uri.queryParameters.get("user"), !user.isEmpty,
                  let (_, methods) = try await open(request, body: [], id: id, user: user) else { return closed() }
            return ChallengePage.response(.ok, ChallengePage.challenge(id: id, user: user, methods: methods, selected: nil), returnURL: returnURL)
        }
        router.post("/challenge/:mfaEventId") { request, context in
            let id = try pathParameter(context, "mfaEventId")
            let raw = try await readBody(request)
            let form = try ChallengePage.form(raw)
            guard let (_, methods) = try await open(request, body: raw, id: id, user: form.user), let method = form.method, methods.contains(method) else {
                return closed()
            }
            func again(_ e: PipelineRequestError) -> Response {
                ChallengePage.response(APIError(e).status, ChallengePage.challenge(
                    id: id, user: form.user, methods: methods, selected: method, problem: ChallengePage.problem(e)), returnURL: returnURL)
            }
            if form.action == "send" {
                do throws(PipelineRequestError) {
                    let sent = try await backend.sendCode(challengeId: id, user: form.user, method: method, timeout: timeout)
                    return ChallengePage.response(.ok, ChallengePage.challenge(
                        id: id, user: form.user, methods: methods, selected: method, notice: "A code was sent to \(sent.maskedAddress)."), returnURL: returnURL)
                } catch { return again(error) }
            }
            let verification: ChallengeVerification
            do throws(PipelineRequestError) {
                verification = try await backend.verifyChallenge(challengeId: id, user: form.user, method: method, code: form.code, timeout: timeout)
            } catch {
                Routes.countRefusal(error, by: "challenge-page")
                return again(error)
            }
            let (token, _) = try await mfaToken(for: verification)
            return ChallengePage.response(.ok, ChallengePage.verified(token: token, returnURL: returnURL), returnURL: returnURL)
        }
    }
}
