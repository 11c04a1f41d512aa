import CLibCrypto

/// Seals factor secrets and submitted codes (AES-256-GCM, OpenSSL) before they enter the
/// input topic, the checkpoints and the changelog: none of those hold a secret in the clear,
/// and a stolen state directory or a reader of the topic gets nothing usable. The key
/// derives from the daemon's secret (DaemonSecret: a systemd credential or a file), so every
/// instance of a group opens what another sealed.
///
/// Each seal binds its user and purpose as associated data: a factor's bytes copied onto
/// another user, or a sealed code replayed as a secret, do not open.
///
/// Format: version 1 (1 byte) · nonce (12 random bytes) · ciphertext · tag (16 bytes).
public struct FactorSeal: Sendable {
    public enum Purpose: String, Sendable {
        /// A factor's shared secret (TOTP).
        case secret
        /// A code submitted for a confirmation or a challenge, or one camfa sent.
        case code
        /// The email address or phone number of a code factor.
        case address
    }

    private let key: [UInt8]
    static let version: UInt8 = 1
    static let nonceBytes = 12
    static let tagBytes = 16

    /// `secret`: the daemon's secret; the key is HMAC-SHA256(secret, "camfa factor seal v1").
    public init(secret: [UInt8]) {
        let label = Array("camfa factor seal v1".utf8)
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = secret.withUnsafeBufferPointer { s in HMAC(EVP_sha256(), s.baseAddress, Int32(s.count), label, label.count, &out, &length) }
        key = out
    }

    public func seal(_ plaintext: [UInt8], user: String, purpose: Purpose) -> [UInt8]? {
        var nonce = [UInt8](repeating: 0, count: Self.nonceBytes)
        guard RAND_bytes(&nonce, Int32(nonce.count)) == 1, let ctx = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let aad = Self.associatedData(user: user, purpose: purpose)
        var out = [UInt8](repeating: 0, count: plaintext.count + 16)
        var n: Int32 = 0, total: Int32 = 0
        guard EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, nil, nil) == 1,
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, Int32(Self.nonceBytes), nil) == 1,
              EVP_EncryptInit_ex(ctx, nil, nil, key, nonce) == 1,
              EVP_EncryptUpdate(ctx, nil, &n, aad, Int32(aad.count)) == 1,
              EVP_EncryptUpdate(ctx, &out, &n, plaintext, Int32(plaintext.count)) == 1 else { return nil }
        total = n
        let finished = out.withUnsafeMutableBufferPointer { EVP_EncryptFinal_ex(ctx, $0.baseAddress! + Int(total), &n) }
        guard finished == 1 else { return nil }
        total += n
        var tag = [UInt8](repeating: 0, count: Self.tagBytes)
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(Self.tagBytes), &tag) == 1 else { return nil }
        return [Self.version] + nonce + out.prefix(Int(total)) + tag
    }

    /// nil when the bytes were not sealed by this key for this user and purpose.
    public func open(_ sealed: [UInt8], user: String, purpose: Purpose) -> [UInt8]? {
        guard sealed.count >= 1 + Self.nonceBytes + Self.tagBytes, sealed[0] == Self.version, let ctx = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let nonce = Array(sealed[1...Self.nonceBytes])
        let body = Array(sealed[(1 + Self.nonceBytes)..<(sealed.count - Self.tagBytes)])
        var tag = Array(sealed.suffix(Self.tagBytes))
        let aad = Self.associatedData(user: user, purpose: purpose)
        var out = [UInt8](repeating: 0, count: body.count + 16)
        var n: Int32 = 0
        guard EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, nil, nil) == 1,
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, Int32(Self.nonceBytes), nil) == 1,
              EVP_DecryptInit_ex(ctx, nil, nil, key, nonce) == 1,
              EVP_DecryptUpdate(ctx, nil, &n, aad, Int32(aad.count)) == 1,
              EVP_DecryptUpdate(ctx, &out, &n, body, Int32(body.count)) == 1,
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(Self.tagBytes), &tag) == 1 else { return nil }
        let total = n
        let verified = out.withUnsafeMutableBufferPointer { EVP_DecryptFinal_ex(ctx, $0.baseAddress! + Int(total), &n) }
        guard verified == 1 else { return nil }
        return Array(out.prefix(Int(total + n)))
    }

    /// Length-prefixed, so no user id can be made to look like another purpose.
    static func associatedData(user: String, purpose: Purpose) -> [UInt8] {
        let u = Array(user.utf8)
        return Array("camfa-factor".utf8) + (0..<4).map { UInt8(truncatingIfNeeded: u.count >> (24 - 8 * $0)) } + u
            + Array(purpose.rawValue.utf8)
    }
}
