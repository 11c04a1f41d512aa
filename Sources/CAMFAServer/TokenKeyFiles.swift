import CAMFADaemon
import CAMFATokens
import Foundation

/// Where the mfaToken signing keys come from, first match wins:
/// 1. `tokens.keys` in the configuration (each a PEM file or `credential:NAME`);
/// 2. the systemd credential `camfa-token-key` (one PEM key, `kid` its RFC 7638 thumbprint);
/// 3. `<stateDir>/token-key.pem`, created with a new P-256 key and mode 0600 on first start:
///    right for one instance; instances behind one load balancer need 1 or 2, or a token
///    issued by one fails verification on the others (their JWKS differ).
public enum TokenKeyFiles {
    public static let credentialName = "camfa-token-key"

    public struct Loaded: Sendable {
        public var keys: [MFATokens.SigningKey]
        /// For the start-up log: where the keys came from, and their kids (never the keys).
        public var origin: String
        public var created: Bool
    }

    public static func load(_ c: Configuration, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(SecretError) -> Loaded
    {
        if !c.tokens.keys.isEmpty {
            var keys: [MFATokens.SigningKey] = []
            for (i, k) in c.tokens.keys.enumerated() {
                keys.append(try read(k.privateKey, kid: k.kid, field: "tokens.keys[\(i)].privateKey"))
            }
            return Loaded(keys: keys, origin: "tokens.keys", created: false)
        }
        if let dir = environment["CREDENTIALS_DIRECTORY"] {
            let path = (dir as NSString).appendingPathComponent(credentialName)
            if FileManager.default.fileExists(atPath: path) {
                return Loaded(keys: [try read(path, kid: nil, field: "systemd credential \(credentialName)")],
                              origin: "systemd credential \(credentialName)", created: false)
            }
        }
        let path = (c.stateDir as NSString).appendingPathComponent("token-key.pem")
        let created = try SecretFile.createExclusive(path, contents: Array(MFATokens.SigningKey.generated(kid: "-").pem.utf8))
        return Loaded(keys: [try read(path, kid: nil, field: path)], origin: path, created: created)
    }

    /// The daemon's token service from the configuration.
    public static func tokens(_ c: Configuration, loaded: Loaded) async throws(MFATokens.TokenError) -> MFATokens {
        try await MFATokens(keys: loaded.keys, issuer: c.tokens.issuer, lifetime: c.tokens.lifetime / 1000)
    }

    private static func read(_ path: String, kid: String?, field: String) throws(SecretError) -> MFATokens.SigningKey {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SecretError(path: field, message: "cannot read \(path)")
        }
        do {
            let key = try MFATokens.SigningKey(kid: kid ?? "-", pem: String(decoding: data, as: UTF8.self))
            return kid == nil ? MFATokens.SigningKey(kid: key.thumbprint, key: key.key) : key
        } catch {
            // The message names the kid and the parse failure, never the file's contents.
            throw SecretError(path: field, message: "\(path): \(error.message)")
        }
    }
}
