import CAMFADaemon
import Testing

@Suite struct HTTPConfigurationTests {
    static let hashA = "sha256:" + String(repeating: "ab", count: 32)
    static let hashB = "sha256:" + String(repeating: "0F", count: 32)

    @Test func defaults() throws {
        let h = try Configuration.parse("", file: "c.yaml").http
        #expect(h.enabled)
        #expect(h.host == "127.0.0.1" && h.port == 8080)
        #expect(h.openEndpoints == ["/healthz"])
        #expect(h.maxBodyBytes == 1 << 20)
        #expect(h.apiKeys.isEmpty && !h.tlsEnabled)
    }

    @Test func fullSectionIsRead() throws {
        let text = """
        http:
          enabled: false
          address: "[::1]:9443"
          tls:
            certificate: /c.pem
            privateKey: /k.pem
          maxBodyBytes: 4096
          requestTimeout: 750ms
          openEndpoints: [/healthz, /metrics]
          readiness:
            maxLag: 5
          apiKeys:
            - name: gw
              hash: \(Self.hashA)
              scopes: [evaluate, status]
            - name: ops
              hash: \(Self.hashB)
              scopes: [admin]
        """
        let h = try Configuration.parse(text, file: "c.yaml").http
        #expect(!h.enabled)
        #expect(h.host == "::1" && h.port == 9443)
        #expect(h.tlsCertificate == "/c.pem" && h.tlsPrivateKey == "/k.pem")
        #expect(h.maxBodyBytes == 4096 && h.requestTimeout == 750 && h.readinessMaxLag == 5)
        #expect(h.openEndpoints == ["/healthz", "/metrics"])
        #expect(h.apiKeys.map(\.name) == ["gw", "ops"])
        #expect(h.apiKeys[0].scopes == [.evaluate, .status])
        #expect(h.apiKeys[0].sha256 == [UInt8](repeating: 0xAB, count: 32))
        #expect(h.apiKeys[1].sha256 == [UInt8](repeating: 0x0F, count: 32))
    }

    @Test func badValuesNameTheKeyAndLine() {
        let text = """
        http:
          address: localhost
          tls:
            certificate: /c.pem
          openEndpoints: [/v1/evaluate]
          apiKeys:
            - name: gw
              hash: plaintext-key
              scopes: [evaluate]
            - name: ops
              hash: \(Self.hashB)
              scopes: [admin, root]
          listen: x
        """
        do {
            _ = try Configuration.parse(text, file: "c.yaml")
            Issue.record("accepted an invalid http section")
        } catch {
            let keys = error.errors.map { "\($0.line):\($0.key)" }
            #expect(keys.contains("2:http.address"))
            #expect(keys.contains("4:http.tls"))
            #expect(keys.contains("5:http.openEndpoints"))
            #expect(keys.contains("8:http.apiKeys.gw.hash"))
            #expect(keys.contains("12:http.apiKeys.ops.scopes"))
            #expect(keys.contains("13:http.listen"))
            #expect(error.errors.count == 6)
            // A plaintext key pasted by mistake must not be echoed into logs.
            #expect(!error.description.contains("plaintext-key"))
        }
    }

    @Test func duplicateKeyNamesAreRefused() {
        let text = """
        http:
          apiKeys:
            - {name: gw, hash: \(Self.hashA), scopes: [evaluate]}
            - {name: gw, hash: \(Self.hashB), scopes: [status]}
        """
        do {
            _ = try Configuration.parse(text, file: "c.yaml")
            Issue.record("accepted two keys named gw")
        } catch {
            #expect(error.errors.map(\.key) == ["http.apiKeys.gw"])
            #expect(error.errors.first?.line == 4)
        }
    }
}
