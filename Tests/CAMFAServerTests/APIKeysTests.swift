import CAMFADaemon
import CAMFAServer
import Testing

@Suite struct APIKeysTests {
    @Test func sha256MatchesTheKnownVector() {
        // FIPS 180-2 example: SHA-256("abc").
        #expect(APIKeys.hashLine("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func generatedKeysAreDistinctAndTheirHashLinesParse() throws {
        let a = try #require(APIKeys.generate())
        let b = try #require(APIKeys.generate())
        #expect(a != b && a.hasPrefix("camfa_") && a.count == 6 + 64)
        let config = try Configuration.parse("http:\n  apiKeys:\n    - {name: k, hash: \"\(APIKeys.hashLine(a))\", scopes: [status]}\n", file: "c.yaml")
        #expect(config.http.apiKeys.first?.sha256 == APIKeys.sha256(a))
    }
}
