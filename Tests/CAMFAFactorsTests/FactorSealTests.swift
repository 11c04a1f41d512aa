import CAMFAFactors
import Testing

/// Sealed factor secrets and codes open only under the same daemon secret, for the same
/// user and purpose, and unaltered.
@Suite struct FactorSealTests {
    let seal = FactorSeal(secret: Array("a-daemon-secret-of-at-least-32-bytes!".utf8))
    let secret = Array("12345678901234567890".utf8)

    @Test func aSealOpensForItsUserAndPurposeOnly() throws {
        let sealed = try #require(seal.seal(secret, user: "alice", purpose: .secret))
        #expect(seal.open(sealed, user: "alice", purpose: .secret) == secret)
        #expect(seal.open(sealed, user: "mallory", purpose: .secret) == nil, "copied onto another user")
        #expect(seal.open(sealed, user: "alice", purpose: .code) == nil, "replayed as a code")
        #expect(FactorSeal(secret: Array("another-daemon-secret-of-32-bytes!!!".utf8)).open(sealed, user: "alice", purpose: .secret) == nil)
        #expect(!sealed.windowsContain(secret), "the secret is not in the sealed bytes")
    }

    @Test func everyAlteredByteIsRefused() throws {
        let sealed = try #require(seal.seal(secret, user: "bob", purpose: .secret))
        for i in sealed.indices {
            var altered = sealed
            altered[i] ^= 0x01
            #expect(seal.open(altered, user: "bob", purpose: .secret) == nil, "byte \(i)")
        }
        #expect(seal.open(Array(sealed.dropLast()), user: "bob", purpose: .secret) == nil)
        #expect(seal.open([], user: "bob", purpose: .secret) == nil)
    }

    @Test func twoSealsOfTheSameSecretDiffer() throws {
        let a = try #require(seal.seal(secret, user: "carol", purpose: .secret))
        let b = try #require(seal.seal(secret, user: "carol", purpose: .secret))
        #expect(a != b, "a fresh nonce each time")
        #expect(seal.open(a, user: "carol", purpose: .secret) == seal.open(b, user: "carol", purpose: .secret))
    }
}

extension Array where Element == UInt8 {
    func windowsContain(_ needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        return (0...(count - needle.count)).contains { Array(self[$0..<($0 + needle.count)]) == needle }
    }
}
