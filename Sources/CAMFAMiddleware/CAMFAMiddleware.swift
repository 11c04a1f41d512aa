import CAMFAClient
import Foundation
import HTTPTypes
import Hummingbird

/// The seed's step 6 for a Hummingbird 2 app, in one line: every request of a known user
/// is checked with `StatusClient.checkUserStatus`; while MFA is pending the answer is 401
/// with the seed's login-response shape, `{"status": false, "mfaTriggerData": {...}}`,
/// which the front end hands to its MFA UI. The fail mode is applied by the client: a
/// request let through only because camfa did not answer carries `camfa-failed-open: true`.
///
///     router.add(middleware: CAMFAMiddleware(client: camfa) { request, _ in request.headers[userHeader] })
public struct CAMFAMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Reads the authenticated user of a request (originalIdentity); nil for none.
    public typealias UserID = @Sendable (Request, Context) -> String?

    let client: StatusClient
    let timeout: Double
    let userID: UserID

    /// - Parameters:
    ///   - client: the status client, shared with the rest of the app (its cache, its fail mode memory).
    ///   - timeout: seconds to wait for camfa before the fail mode decides.
    ///   - userID: the authenticated user of a request (originalIdentity); nil lets the
    ///     request through unchecked (not logged in yet: the login route itself).
    public init(client: StatusClient, timeout: Double = 0.5, userID: @escaping UserID) {
        self.client = client
        self.timeout = timeout
        self.userID = userID
    }

    /// Checks the request's user and answers 401 while MFA is pending; otherwise passes it on.
    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let user = userID(request, context) else { return try await next(request, context) }
        let status = await client.checkUserStatus(user, timeout: timeout)
        guard status.allowed else { return Self.mfaRequired(status) }
        var response = try await next(request, context)
        if status.failedOpen { response.headers[Self.failedOpenHeader] = "true" }
        return response
    }

    /// `camfa-failed-open: true` on a response let through only by the open fail mode.
    public static var failedOpenHeader: HTTPField.Name { HTTPField.Name("camfa-failed-open")! }

    /// `{"status": false, "mfaTriggerData": {"originalIdentity", "mfaEventId", "flow",
    /// "methods", "pending": [...]}}`: the first pending challenge, and all of them.
    static func mfaRequired(_ s: UserStatus) -> Response {
        let pending = s.pending.map { ["mfaEventId": $0.mfaEventId, "flow": $0.flow, "methods": $0.methods] as [String: Any] }
        var trigger: [String: Any] = ["originalIdentity": s.user, "pending": pending, "failMode": s.failMode.rawValue]
        if let first = s.pending.first {
            trigger["mfaEventId"] = first.mfaEventId
            trigger["flow"] = first.flow
            trigger["methods"] = first.methods
        }
        if case .failMode(let reason) = s.source { trigger["reason"] = "camfa did not answer (\(reason)); the flow is fail-closed" }
        let body = (try? JSONSerialization.data(withJSONObject: ["status": false, "mfaTriggerData": trigger], options: [.sortedKeys])) ?? Data()
        return Response(status: .unauthorized, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
