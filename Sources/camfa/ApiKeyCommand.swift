import ArgumentParser
import CAMFAServer

/// Makes a new API key for the HTTP API. The key is printed once, for the client; the
/// configuration gets only its hash, so the config file never holds a usable key.
struct ApiKeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apikey",
        abstract: "Print a new random API key and the http.apiKeys entry (its sha256 hash) for the configuration.")

    @Option(help: "The key's name in the configuration (shown in logs instead of the key).") var name = "client"
    @Option(parsing: .upToNextOption, help: "Scopes: evaluate, status, results, admin.") var scopes: [String] = ["evaluate", "status"]
    @Option(help: "Hash this existing key instead of making a new one (read from standard input with -).") var hash: String?

    func run() throws {
        let allowed = ["evaluate", "status", "results", "admin"]
        for s in scopes where !allowed.contains(s) {
            throw ValidationError("unknown scope '\(s)' (allowed: \(allowed.joined(separator: ", ")))")
        }
        let key: String
        if let hash {
            key = hash == "-" ? (readLine(strippingNewline: true) ?? "") : hash
            guard !key.isEmpty else { throw ValidationError("the key to hash is empty") }
        } else {
            guard let k = APIKeys.generate() else { throw ValidationError("OpenSSL's random generator failed") }
            key = k
            print("key: \(k)")
            print("# give the key to the client (Authorization: Bearer <key>); it is not stored anywhere.")
        }
        print("""
        # http.apiKeys entry:
            - name: \(name)
              hash: \(APIKeys.hashLine(key))
              scopes: [\(scopes.joined(separator: ", "))]
        """)
    }
}
