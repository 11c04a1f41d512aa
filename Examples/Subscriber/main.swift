// The seed's `subscribe("authing.security.mfa?originalIdentity=…", handler)`: a service
// that reacts to camfa's MFA events for its users (here: prints what it would do).
//
//   CAMFA_BOOTSTRAP=127.0.0.1:9092 camfa-example-subscriber 'authing.security.mfa?appId=portal'
import CAMFAClient
import Dispatch
import Foundation

let env = ProcessInfo.processInfo.environment
let subscriber = MFASubscriber(bootstrap: env["CAMFA_BOOTSTRAP"] ?? "127.0.0.1:9092", group: env["CAMFA_GROUP"] ?? "example-subscriber",
                               topic: env["CAMFA_OUTPUT_TOPIC"] ?? "authing.security.mfa")
let events = try subscriber.subscribe(filter: MFAEventFilter(parsing: Array(CommandLine.arguments.dropFirst())), from: .beginning)

let handler = Task {
    // Each event is committed when the loop asks for the next one: a restart goes on
    // after the last event handled, and the stream has already dropped repeats.
    for await event in events {
        let line = switch event.action {
        case .mfa: "hold the session of \(event.originalIdentity) until MFA (\(event.flow ?? "?"), challenge \(event.id))"
        case .deny: "end the session of \(event.originalIdentity) (\(event.flow ?? "?"))"
        case .cleared: "release \(event.originalIdentity) (challenge \(event.challengeId ?? "?") cleared)"
        }
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}

// Stop on SIGTERM/SIGINT: cancelling the loop commits what was handled and leaves the group.
signal(SIGTERM, SIG_IGN)
signal(SIGINT, SIG_IGN)
let stops = [SIGTERM, SIGINT].map { sig in
    let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
    source.setEventHandler { @Sendable in handler.cancel() }
    source.resume()
    return source
}
await handler.value
