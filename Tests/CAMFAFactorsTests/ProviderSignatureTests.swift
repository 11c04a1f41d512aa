import CAMFADaemon
import CAMFADelivery
import Foundation
import Testing

/// `Camfa-Signature` as a provider's callback presents it (the face verdicts): only the
/// shared secret, over this body, within the tolerance; nothing a caller writes into the
/// header can trap the daemon.
@Suite struct ProviderSignatureTests {
    let secret = Array("provider-secret-0123456789abcdef".utf8)
    let body = Data(#"{"user":"u","code":"1234567890","verdict":"match"}"#.utf8)
    let now: Int64 = 1_780_000_000

    @Test func aFreshSignatureOfThisBodyHolds() {
        let header = CodeSender.signature(body: body, secret: secret, unixSeconds: now - 299)
        #expect(CodeSender.signatureIsValid(header, body: body, secret: secret, now: now))
        #expect(CodeSender.signatureIsValid(header.uppercased().replacingOccurrences(of: "T=", with: "t=").replacingOccurrences(of: "V1=", with: "v1="),
                                            body: body, secret: secret, now: now), "hex in either case")
        #expect(!CodeSender.signatureIsValid(header, body: body + Data(" ".utf8), secret: secret, now: now), "another body")
        #expect(!CodeSender.signatureIsValid(header, body: body, secret: Array("x".utf8) + secret, now: now), "another secret")
        #expect(!CodeSender.signatureIsValid(CodeSender.signature(body: body, secret: secret, unixSeconds: now - 301), body: body, secret: secret, now: now), "too old")
        #expect(!CodeSender.signatureIsValid(CodeSender.signature(body: body, secret: secret, unixSeconds: now + 301), body: body, secret: secret, now: now), "too new")
    }

    @Test func extremeOrMalformedHeadersAreRefusedWithoutTrapping() {
        for header in ["t=-9223372036854775808,v1=00", "t=9223372036854775807,v1=00", "t=,v1=", "v1=00", "t=\(now)", "t=\(now),v1", "", ",,,", "t=1e3,v1=00"] {
            #expect(!CodeSender.signatureIsValid(header, body: body, secret: secret, now: now), "\(header)")
        }
        // A clock at the edge of Int64 does not trap either.
        #expect(!CodeSender.signatureIsValid("t=0,v1=00", body: body, secret: secret, now: .max))
        #expect(!CodeSender.signatureIsValid("t=0,v1=00", body: body, secret: secret, now: .min))
    }

    @Test func aProcessedSignatureIsARepeatUntilItsWindowEnds() {
        let replays = SignatureReplays(capacity: 2)
        replays.remember("a", until: 100, now: 0)
        #expect(replays.contains("a", now: 50) && !replays.contains("a", now: 101) && !replays.contains("b", now: 50))
        replays.remember("b", until: 200, now: 0)
        replays.remember("c", until: 300, now: 0)  // at capacity: the oldest window goes first
        #expect(!replays.contains("a", now: 50) && replays.contains("b", now: 50) && replays.contains("c", now: 50))
    }
}
