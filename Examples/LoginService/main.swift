// A business login service integrated with camfa the seed's way (README "HTTP API",
// "From Swift"): `POST /login` captures the login as a UEBA event (Kafka, event-flow mode),
// and every other route goes through `CAMFAMiddleware`, which answers 401 with the MFA
// trigger data while the user has a challenge pending and applies the fail mode when camfa
// does not answer.
//
//   CAMFA_BOOTSTRAP=127.0.0.1:9092 CAMFA_URL=http://127.0.0.1:8080 CAMFA_STATUS_KEY=camfa_... \
//   PORT=8090 camfa-example-login
//
// The session is faked with an `X-User` header: the point is the three camfa calls.
import CAMFAClient
import CAMFAMiddleware
import Foundation
import HTTPTypes
import Hummingbird

let env = ProcessInfo.processInfo.environment
guard let bootstrap = env["CAMFA_BOOTSTRAP"], let camfaURL = env["CAMFA_URL"].flatMap(URL.init(string:)), let key = env["CAMFA_STATUS_KEY"] else {
    FileHandle.standardError.write(Data("set CAMFA_BOOTSTRAP, CAMFA_URL and CAMFA_STATUS_KEY\n".utf8))
    exit(2)
}
let capture = try EventCapture(bootstrap: bootstrap, topic: env["CAMFA_INPUT_TOPIC"] ?? "camfa.ueba")
let camfa = StatusClient(baseURL: camfaURL, apiKey: key, cacheTTL: Double(env["CAMFA_CACHE_SECONDS"] ?? "") ?? 2)
let userHeader = HTTPField.Name("X-User")!

struct Login: Decodable {
    var user: String
    var app: String
    var ip: String
}

let router = Router()
// 1. capture(ueba): the login, with what the service knows of the request.
router.post("/login") { request, context -> Response in
    let login = try await request.decode(as: Login.self, context: context)
    let event: [String: Any] = [
        "originalIdentity": login.user, "appId": login.app, "ip": login.ip, "behaviorType": "login",
        "behaviorResult": "success", "requestDate": Int64(Date().timeIntervalSince1970 * 1000),
    ]
    try capture.capture(json: try JSONSerialization.data(withJSONObject: event))
    return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"status":true}"#)))
}
// 2. checkUserStatus in a middleware: everything below it is held while MFA is pending.
let account = router.group("/account")
account.add(middleware: CAMFAMiddleware(client: camfa, timeout: Double(env["CAMFA_TIMEOUT_SECONDS"] ?? "") ?? 0.5) { request, _ in
    request.headers[userHeader]
})
account.get { request, _ in "the account of \(request.headers[userHeader] ?? "?")\n" }

let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: Int(env["PORT"] ?? "") ?? 8090)),
                      onServerRunning: { channel in print("listening on \(channel.localAddress?.port ?? 0)") })
try await app.runService()
