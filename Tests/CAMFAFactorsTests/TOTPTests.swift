import CAMFAFactors
import CAMFATestSupport
import Foundation
import Testing

/// TOTP (issue 25 item 1) against the RFCs' own test vectors and against an independent
/// implementation (pyotp).
@Suite struct TOTPTests {
    static let rfcSecret = Array("12345678901234567890".utf8)

    /// RFC 4226 appendix D.
    @Test func hotpMatchesRFC4226() {
        let expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]
        for (counter, code) in expected.enumerated() {
            #expect(TOTP.hotp(secret: Self.rfcSecret, counter: UInt64(counter), digits: 6) == code, "counter \(counter)")
        }
    }

    /// RFC 6238 appendix B, the SHA-1 rows (8 digits).
    @Test func totpMatchesRFC6238() {
        let rows: [(Int64, String)] = [(59, "94287082"), (1_111_111_109, "07081804"), (1_111_111_111, "14050471"),
                                       (1_234_567_890, "89005924"), (2_000_000_000, "69279037"), (20_000_000_000, "65353130")]
        let totp = TOTP(secret: Self.rfcSecret, digits: 8)
        for (t, code) in rows { #expect(totp.code(at: t) == code, "T = \(t)") }
    }

    /// RFC 4648 section 10, and what authenticator apps type.
    @Test func base32MatchesRFC4648() {
        let vectors = [("", ""), ("f", "MY"), ("fo", "MZXQ"), ("foo", "MZXW6"), ("foob", "MZXW6YQ"), ("fooba", "MZXW6YTB"), ("foobar", "MZXW6YTBOI")]
        for (plain, encoded) in vectors {
            #expect(Base32.encode(Array(plain.utf8)) == encoded)
            #expect(Base32.decode(encoded) == Array(plain.utf8))
            #expect(Base32.decode(encoded.lowercased() + "======") == Array(plain.utf8))
        }
        #expect(Base32.decode("MZXW 6YTB") == Array("foob".utf8) + [0x61])
        #expect(Base32.decode("MZXW1") == nil, "1 is not in the alphabet")
        #expect(Base32.decode("MZ9") == nil)
        #expect(Base32.decode("MZXR") == nil, "leftover bits that are not zero")
    }

    @Test func codesWithinOneStepAreAcceptedOnceAndOthersRefused() {
        let v = TOTPVerifier(totp: TOTP(secret: Self.rfcSecret))
        let t: Int64 = 1_767_225_615  // the middle of a step
        let step = v.totp.step(at: t)
        #expect(v.verify(v.totp.code(at: t), at: t, lastUsedStep: nil) == .accepted(step: step))
        #expect(v.verify(v.totp.code(at: t - 30), at: t, lastUsedStep: nil) == .accepted(step: step - 1), "a slow clock")
        #expect(v.verify(v.totp.code(at: t + 30), at: t, lastUsedStep: nil) == .accepted(step: step + 1), "a fast clock")
        #expect(v.verify(v.totp.code(at: t - 60), at: t, lastUsedStep: nil) == .wrongCode, "two steps off")
        // Single use: the same code again, or an older step's, is a replay.
        #expect(v.verify(v.totp.code(at: t), at: t + 10, lastUsedStep: step) == .replayed)
        #expect(v.verify(v.totp.code(at: t - 30), at: t, lastUsedStep: step) == .replayed)
        #expect(v.verify(v.totp.code(at: t + 30), at: t + 30, lastUsedStep: step) == .accepted(step: step + 1))
        for bad in ["", "12345", "1234567", "12345a", " 12345", "１２３４５６"] {
            #expect(v.verify(bad, at: t, lastUsedStep: nil) == .wrongCode, "\(bad)")
        }
    }

    @Test func newSecretsAreRandomAndTheURICarriesThem() throws {
        let a = try #require(TOTP.newSecret()), b = try #require(TOTP.newSecret())
        #expect(a.count == 20 && a != b)
        let uri = TOTP(secret: a).uri(issuer: "camfa", account: "alice@example.com")
        #expect(uri.hasPrefix("otpauth://totp/camfa:alice%40example.com?secret=\(Base32.encode(a))&issuer=camfa"))
        #expect(uri.hasSuffix("&algorithm=SHA1&digits=6&period=30"))
        #expect(Base32.decode(Base32.encode(a)) == a)
    }

    /// An independent implementation computes the codes the verifier accepts: what a user's
    /// authenticator app would show (pyotp; skipped without it, a failure under CI=true).
    @Test func pyotpAgreesOnRandomSecretsAndTimes() throws {
        var rng = SeededRandom(seed: 6238)
        var cases: [(secret: String, time: Int64)] = []
        for _ in 0..<50 {
            let secret = (0..<(14 + rng.int(27))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            cases.append((Base32.encode(secret), Int64(rng.int(4_000_000_000))))
        }
        let script = "import pyotp, sys\nfor line in sys.stdin.read().split():\n    s, t = line.split(',')\n    print(pyotp.TOTP(s).at(int(t)))"
        let input = cases.map { "\($0.secret),\($0.time)" }.joined(separator: "\n")
        guard let r = try runTool("python3", ["-c", script], stdin: Data(input.utf8)), !r.stderr.contains("No module named") else {
            #expect(!isCI, "python3 with pyotp is needed (scripts/install-deps.sh installs it)")
            return
        }
        #expect(r.status == 0, "\(r.stderr)")
        let theirs = r.stdout.split(separator: "\n").map(String.init)
        #expect(theirs.count == cases.count)
        for (c, code) in zip(cases, theirs) {
            let totp = TOTP(secret: try #require(Base32.decode(c.secret)))
            #expect(totp.code(at: c.time) == code, "secret \(c.secret) at \(c.time)")
            #expect(TOTPVerifier(totp: totp).verify(code, at: c.time, lastUsedStep: nil) == .accepted(step: totp.step(at: c.time)))
        }
    }
}
