import CAMFACore
import CAMFADaemon
import Foundation
import Testing

/// The secret's sources and the record MAC (README "Security model").
@Suite struct SecurityTests {
    func scratch() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-secret-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func theCredentialWinsThenTheFileThenAGeneratedOne() throws {
        let dir = try scratch()
        var c = Configuration()
        c.stateDir = dir + "/state"
        // Nothing configured: created once in the state directory, 0600, then reused.
        let created = try DaemonSecret.load(c, environment: [:])
        #expect(created.origin.hasSuffix("(created)"))
        #expect(created.bytes.count == 64)
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/state/secret")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try DaemonSecret.load(c, environment: [:]).bytes == created.bytes)
        // security.secretFile, trailing newline ignored.
        try "file-secret-0123456789abcdef0123456789\n".write(toFile: dir + "/file", atomically: true, encoding: .utf8)
        c.security.secretFile = dir + "/file"
        #expect(try DaemonSecret.load(c, environment: [:]).bytes == Array("file-secret-0123456789abcdef0123456789".utf8))
        // The systemd credential first.
        try FileManager.default.createDirectory(atPath: dir + "/creds", withIntermediateDirectories: true)
        try "credential-secret-0123456789abcdef0123".write(toFile: dir + "/creds/camfa-secret", atomically: true, encoding: .utf8)
        let fromCredential = try DaemonSecret.load(c, environment: ["CREDENTIALS_DIRECTORY": dir + "/creds"])
        #expect(fromCredential.bytes == Array("credential-secret-0123456789abcdef0123".utf8))
        #expect(fromCredential.origin == "systemd credential camfa-secret")
    }

    @Test func aShortSecretIsRefusedNamingTheFile() throws {
        let dir = try scratch()
        try "short".write(toFile: dir + "/s", atomically: true, encoding: .utf8)
        var c = Configuration()
        c.security.secretFile = dir + "/s"
        do {
            _ = try DaemonSecret.load(c, environment: [:])
            Issue.record("a 5-byte secret was accepted")
        } catch {
            #expect(error.path == dir + "/s")
            #expect(error.message.contains("at least 32 bytes"))
        }
    }

    @Test func theMACCoversKeyValueAndEveryControlHeader() {
        let mac = RecordAuthenticator(secret: Array("camfa-test-secret-0123456789abcdef".utf8))
        let key = Array("alice".utf8), value = Array(#"{"mfaEventId":"x"}"#.utf8)
        let headers: [(String, [UInt8]?)] = [("camfa.kind", Array("mfa-result".utf8)), ("camfa.request", Array("r1".utf8))]
        let signed = mac.sign(key: key, value: value, headers: headers)
        #expect(mac.verify(key: key, value: value, headers: signed))
        // Headers in another order are the same record.
        #expect(mac.verify(key: key, value: value, headers: signed.reversed()))
        // Any change is a forgery: the key, the value, a header's value, an added or a removed
        // control header, a second MAC; and another secret's MAC.
        #expect(!mac.verify(key: Array("bob".utf8), value: value, headers: signed))
        #expect(!mac.verify(key: nil, value: value, headers: signed))
        #expect(!mac.verify(key: key, value: value + [0x20], headers: signed))
        #expect(!mac.verify(key: key, value: value, headers: [("camfa.kind", Array("release".utf8))] + signed.dropFirst()))
        #expect(!mac.verify(key: key, value: value, headers: signed + [("camfa.trigger", Array("http".utf8))]))
        #expect(!mac.verify(key: key, value: value, headers: Array(signed.dropFirst())))
        #expect(!mac.verify(key: key, value: value, headers: signed + [signed.last!]))
        #expect(!mac.verify(key: key, value: value, headers: headers))
        let other = RecordAuthenticator(secret: Array("another-secret-0123456789abcdef!!".utf8))
        #expect(!other.verify(key: key, value: value, headers: signed))
        // Headers that are not camfa's do not take part: a broker or proxy may add them.
        #expect(mac.verify(key: key, value: value, headers: signed + [("traceparent", Array("00-1".utf8))]))
    }
}

extension SecurityTests {
    @Test func credentialReferencesResolveThroughTheCredentialsDirectory() throws {
        let dir = try scratch()
        try "s3cret\n".write(toFile: dir + "/kafka-password", atomically: true, encoding: .utf8)
        try "KEY".write(toFile: dir + "/tls-key", atomically: true, encoding: .utf8)
        var c = Configuration()
        c.kafka.properties = ["sasl.password": "credential:kafka-password", "sasl.username": "camfa"]
        c.http.tlsCertificate = "/etc/camfa/tls/server.crt"
        c.http.tlsPrivateKey = "credential:tls-key"
        let r = try c.resolvingCredentials(environment: ["CREDENTIALS_DIRECTORY": dir])
        #expect(r.kafka.properties["sasl.password"] == "s3cret")
        #expect(r.kafka.properties["sasl.username"] == "camfa")
        #expect(r.http.tlsPrivateKey == dir + "/tls-key")
        #expect(r.http.tlsCertificate == "/etc/camfa/tls/server.crt")
        // Without systemd's directory, or with a credential it did not pass: a clear error.
        do {
            _ = try c.resolvingCredentials(environment: [:])
            Issue.record("resolved without CREDENTIALS_DIRECTORY")
        } catch {
            #expect(error.description.contains("CREDENTIALS_DIRECTORY is unset"))
        }
        c.http.tlsPrivateKey = "credential:missing"
        #expect(throws: SecretError.self) { try c.resolvingCredentials(environment: ["CREDENTIALS_DIRECTORY": dir]) }
    }
}
