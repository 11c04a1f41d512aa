import ArgumentParser
import CAMFADaemon
import CAMFATokens

/// Makes a new mfaToken signing key (P-256) in a file only its owner can read, and prints
/// the tokens.keys entry; the key itself is never printed.
struct TokenKeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token-key",
        abstract: "Write a new ES256 signing key for mfaTokens (mode 0600) and print the tokens.keys entry.")

    @Option(help: "The file to create (it must not exist).") var out: String
    @Option(help: "The key's kid (default: its RFC 7638 thumbprint).") var kid: String?

    func run() throws {
        let key = MFATokens.SigningKey.generated(kid: "-")
        let created: Bool
        do { created = try SecretFile.createExclusive(out, contents: Array(key.pem.utf8)) } catch {
            throw ValidationError("\(error)")
        }
        guard created else { throw ValidationError("\(out) exists already; camfa token-key never overwrites a key") }
        print("""
        # tokens.keys entry (put the new key first to sign with it; keep the old one until its tokens have expired):
            - kid: \(kid ?? key.thumbprint)
              privateKey: \(out)
        """)
    }
}
