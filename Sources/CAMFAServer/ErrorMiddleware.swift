import Hummingbird
import Logging

/// Turns everything thrown below it into the JSON error body, so no route answers a
/// non-2xx status without `{"error": ...}` (the OpenAPI description relies on it).
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as APIError {
            return e.response
        } catch let f as ForwardedResponse {
            return f.response
        } catch let e as HTTPResponseError where e.status == .notFound && !Routes.methods(for: request.uri.path).isEmpty {
            // The router answers 404 for a known path with another method; say 405 and Allow.
            return APIError.methodNotAllowed(Routes.methods(for: request.uri.path)).response
        } catch let e as HTTPResponseError {
            // Hummingbird's own: unknown route (404), bad method, ...
            let code = e.status == .notFound ? "not-found" : e.status == .contentTooLarge ? "too-large" : "http-\(e.status.code)"
            let message = e.status == .notFound ? "no such endpoint" : e.status.reasonPhrase
            return APIError(status: e.status, code: code, message: message).response
        } catch {
            // No request content in the log: it may carry personal data.
            logger.error("unhandled error in \(request.method) route", metadata: ["error": "\(type(of: error))"])
            return APIError(status: .internalServerError, code: "internal", message: "internal error").response
        }
    }
}
