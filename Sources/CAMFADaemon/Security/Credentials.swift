import Foundation

/// systemd credentials (`LoadCredential=NAME:/path` in the unit) for what must not sit in a
/// world-readable /etc/camfa/camfa.yaml: a value `credential:NAME` stands for the credential
/// systemd put in `$CREDENTIALS_DIRECTORY`. Paths (`http.tls.*`, `security.secretFile`, `tokens.keys[].privateKey`,
/// `factors.email.passwordFile`, `factors.sms.secretFile`) become
/// the credential's path; `kafka.properties` values (`sasl.password`, `ssl.key.password`)
/// become its contents, without a trailing newline.
extension Configuration {
    public static let credentialPrefix = "credential:"

    public func resolvingCredentials(environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(SecretError) -> Configuration
    {
        var c = self
        func path(_ value: String?, _ key: String) throws(SecretError) -> String? {
            guard let value, value.hasPrefix(Self.credentialPrefix) else { return value }
            let name = String(value.dropFirst(Self.credentialPrefix.count))
            guard let dir = environment["CREDENTIALS_DIRECTORY"] else {
                throw SecretError(path: key, message: "names the credential '\(name)', but no systemd credentials were passed (CREDENTIALS_DIRECTORY is unset; LoadCredential=\(name):… in the unit)")
            }
            let p = (dir as NSString).appendingPathComponent(name)
            guard FileManager.default.isReadableFile(atPath: p) else {
                throw SecretError(path: key, message: "the credential '\(name)' is not in \(dir)")
            }
            return p
        }
        c.http.tlsCertificate = try path(c.http.tlsCertificate, "http.tls.certificate")
        c.http.tlsPrivateKey = try path(c.http.tlsPrivateKey, "http.tls.privateKey")
        c.security.secretFile = try path(c.security.secretFile, "security.secretFile")
        if let file = c.factors.email?.passwordFile { c.factors.email?.passwordFile = try path(file, "factors.email.passwordFile") }
        if let file = c.factors.sms?.secretFile { c.factors.sms?.secretFile = try path(file, "factors.sms.secretFile")! }
        if let file = c.factors.face?.secretFile { c.factors.face?.secretFile = try path(file, "factors.face.secretFile")! }
        for i in c.tokens.keys.indices {
            c.tokens.keys[i].privateKey = try path(c.tokens.keys[i].privateKey, "tokens.keys[\(i)].privateKey")!
        }
        for (name, value) in c.kafka.properties where value.hasPrefix(Self.credentialPrefix) {
            let file = try path(value, "kafka.properties.\(name)")!
            guard var text = (FileManager.default.contents(atPath: file)).map({ String(decoding: $0, as: UTF8.self) }) else {
                throw SecretError(path: "kafka.properties.\(name)", message: "cannot read \(file)")
            }
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
            c.kafka.properties[name] = text
        }
        return c
    }
}
