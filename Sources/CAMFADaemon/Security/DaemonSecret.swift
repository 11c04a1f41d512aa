import CAMFACore
import CAMFAFactors
import Foundation

/// The operator's secret: it keys challenge ids (`ChallengeKey`) and the MAC on the records
/// camfa writes into its own input topic (`RecordAuthenticator`), each through its own
/// derived key. Every instance of a consumer group must hold the same secret: a partition
/// that moves to another instance must accept the records and issue the ids the first one
/// would have (README "Security model").
///
/// Where it comes from, first match wins:
/// 1. the systemd credential `camfa-secret` (`LoadCredential=camfa-secret:/etc/camfa/secret`
///    in the unit: the file stays readable by root only, systemd hands it to the service);
/// 2. `security.secretFile` in the configuration;
/// 3. `<stateDir>/secret`, created with 32 random bytes and mode 0600 on first start: right
///    for one instance, and the start-up log says so; a group of several hosts needs 1 or 2.
public struct DaemonSecret: Sendable {
    public static let credentialName = "camfa-secret"
    public static let minimumBytes = 32

    public let bytes: [UInt8]
    /// Where it was read from, for the start-up log (never the secret itself).
    public let origin: String

    public init(bytes: [UInt8], origin: String) {
        self.bytes = bytes
        self.origin = origin
    }

    public var challengeKey: ChallengeKey { ChallengeKey(secret: bytes) }
    public var records: RecordAuthenticator { RecordAuthenticator(secret: bytes) }
    public var factorSeal: FactorSeal { FactorSeal(secret: bytes) }

    public static func load(_ c: Configuration, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(SecretError) -> DaemonSecret
    {
        if let dir = environment["CREDENTIALS_DIRECTORY"] {
            let path = (dir as NSString).appendingPathComponent(credentialName)
            if FileManager.default.fileExists(atPath: path) { return try read(path, origin: "systemd credential \(credentialName)") }
        }
        if let path = c.security.secretFile { return try read(path, origin: path) }
        let path = (c.stateDir as NSString).appendingPathComponent("secret")
        if FileManager.default.fileExists(atPath: path) { return try read(path, origin: path) }
        return try create(path)
    }

    private static func read(_ path: String, origin: String) throws(SecretError) -> DaemonSecret {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SecretError(path: path, message: "cannot read the secret file")
        }
        // A trailing newline from `echo` or an editor is not part of the secret.
        var bytes = [UInt8](data)
        while let last = bytes.last, last == 0x0A || last == 0x0D { bytes.removeLast() }
        guard bytes.count >= minimumBytes else {
            throw SecretError(path: path, message: "the secret must be at least \(minimumBytes) bytes; it has \(bytes.count) (e.g. `openssl rand -hex 32 > \(path)`)")
        }
        return DaemonSecret(bytes: bytes, origin: origin)
    }

    private static func create(_ path: String) throws(SecretError) -> DaemonSecret {
        var rng = SystemRandomNumberGenerator()
        let hex = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
        guard try SecretFile.createExclusive(path, contents: Array((hex + "\n").utf8)) else { return try read(path, origin: path) }
        return DaemonSecret(bytes: Array(hex.utf8), origin: "\(path) (created)")
    }
}

/// Secrets camfa creates in its state directory on first start.
public enum SecretFile {
    /// Writes `contents` to a new file of mode 0600 (creating its directory); false when the
    /// file exists already. O_EXCL: two instances starting at once on one state directory
    /// agree on the first one's file.
    public static func createExclusive(_ path: String, contents: [UInt8]) throws(SecretError) -> Bool {
        let dir = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw SecretError(path: dir, message: "cannot create the state directory: \(error.localizedDescription)")
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        if fd < 0 {
            if errno == EEXIST { return false }
            throw SecretError(path: path, message: "cannot create the file: \(String(cString: strerror(errno)))")
        }
        let written = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        fsync(fd)
        close(fd)
        guard written == contents.count else { throw SecretError(path: path, message: "cannot write the file") }
        return true
    }
}

public struct SecretError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
}
