import CAMFADaemon
import CLibCrypto

/// API keys: callers send `Authorization: Bearer <key>`; the configuration holds only the
/// SHA-256 of each key, so a leaked config file does not leak a usable key.
public enum APIKeys {
    /// SHA-256 of the key's UTF-8 text.
    public static func sha256(_ key: String) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
        var bytes = Array(key.utf8)
        bytes.withUnsafeMutableBufferPointer { b in
            out.withUnsafeMutableBufferPointer { o in _ = SHA256(b.baseAddress, b.count, o.baseAddress) }
        }
        return out
    }

    /// The configuration form of a key's hash: `sha256:<64 lowercase hex>`.
    public static func hashLine(_ key: String) -> String {
        "sha256:" + hex(sha256(key))
    }

    /// A new key: `camfa_` and 32 bytes from OpenSSL's CSPRNG in hex (256 bits, so the
    /// hash needs no salt or stretching: there is nothing to guess).
    public static func generate() -> String? {
        var bytes = [UInt8](repeating: 0, count: 32)
        let ok = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, 32) }
        return ok == 1 ? "camfa_" + hex(bytes) : nil
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The configured keys, looked up by the hash of the presented key.
struct KeyRing: Sendable {
    let keys: [Configuration.HTTP.APIKey]

    /// Every configured hash is compared in constant time, so timing tells nothing about
    /// which key (or how much of a hash) matched.
    func match(_ presented: String) -> Configuration.HTTP.APIKey? {
        let digest = APIKeys.sha256(presented)
        var found: Configuration.HTTP.APIKey?
        for key in keys where key.sha256.count == digest.count {
            let same = key.sha256.withUnsafeBytes { a in digest.withUnsafeBytes { b in CRYPTO_memcmp(a.baseAddress, b.baseAddress, a.count) } }
            if same == 0 { found = key }
        }
        return found
    }
}
