import CAMFACore
import CAMFAPolicyFiles
import Foundation
import Yams

/// The daemon's configuration: one YAML file (deploy/camfa.yaml is the commented example).
/// Every unknown key or bad value is an error naming the key path and its line.
public struct Configuration: Sendable, Equatable {
    public struct Kafka: Sendable, Equatable {
        public var bootstrap = "localhost:9092"
        public var groupId = "camfa"
        /// librdkafka properties passed through verbatim (security.protocol, ssl.*, sasl.*, ...).
        public var properties: [String: String] = [:]
    }

    public struct Topics: Sendable, Equatable {
        public var input = "camfa.ueba"
        public var output = "authing.security.mfa"
        public var deadLetter = "camfa.ueba.dlq"
        public var results = "authing.security.mfa.result"
        /// Each task's state changes, one partition per input partition, compacted (README
        /// "Changelog topics"); nil: state lives only in the local store, so a task moved
        /// to a host without it restarts from the input topic.
        public var changelog: String?
        /// Operations for statistics keyed by something other than the user, keyed by that
        /// key (README "Repartitioning"); nil: every statistic is counted in the user's
        /// task, exact only on a one-partition input.
        public var repartition: String?
        /// Which instance processes each input partition (one partition, compacted; README
        /// "Any instance answers"); nil: a request for a user processed by another instance
        /// answers 503 not-owned instead of being forwarded there.
        public var owners: String?
    }

    public struct Engine: Sendable, Equatable {
        public var allowedLateness: Int64 = 5 * 60_000
        /// Events (and results) dated further than this ahead of camfa's clock are rejected.
        public var maxFutureSkew: Int64 = 5 * 60_000
        public var maxMessageBytes = 1 << 20
        /// UTF-8 bytes of a user id (events, results); longer → dead letter `tooLong`.
        public var maxIdentityBytes = 256
        /// UTF-8 bytes of any other string field of an event.
        public var maxFieldBytes = 2048
        /// Live keys per keyspace and users, each per partition: at the cap the earliest due
        /// are evicted (README "Security model"); 1.5 GB per million users and their keys.
        public var maxKeysPerKeyspace = EngineOptions().maxKeysPerKeyspace
        public var maxUsers = EngineOptions().maxUsers
        /// Records a user task holds while an event waits for key tasks' readings (README
        /// "Repartitioning"); past it the partition pauses.
        public var maxParkedRecords = 50_000
        /// The same bound on the parked records' bytes.
        public var maxParkedBytes = 64 << 20

        public var limits: EventLimits { EventLimits(maxIdentityBytes: maxIdentityBytes, maxFieldBytes: maxFieldBytes) }

        /// What the policy set is compiled with (start and every reload).
        public var options: EngineOptions {
            var o = EngineOptions()
            o.allowedLateness = allowedLateness
            o.maxKeysPerKeyspace = maxKeysPerKeyspace
            o.maxUsers = maxUsers
            return o
        }
    }

    public struct Enrichment: Sendable, Equatable {
        public var cityDatabase: String? = "/var/lib/GeoIP/GeoLite2-City.mmdb"
        public var asnDatabase: String? = "/var/lib/GeoIP/GeoLite2-ASN.mmdb"
        public var anonymousIPDatabase: String? = "/var/lib/GeoIP/GeoIP2-Anonymous-IP.mmdb"
        public var userAgentRules: String? = "/usr/share/camfa/regexes.yaml"
        public var overwrite = false
        /// Whether a producer's own `geo`, `userAgent` and `networkZone` are believed. Off:
        /// they are dropped before enrichment, so a producer cannot claim an office network
        /// or a known device; camfa's databases and zones alone fill them.
        public var trustProducer = false
        public var userAgentCacheSize = 10_000
        public var zones: [String: [String]] = [:]
    }

    public struct Checkpoint: Sendable, Equatable {
        public var interval: Int64 = 5_000
        public var events = 50_000
    }

    public struct Logging: Sendable, Equatable {
        public var level = "info"
        public var format = "text"
        /// User ids and IPs appear in logs only when this is true.
        public var personalData = false
    }

    /// The HTTP surface (CAMFAServer): API mode, user status, MFA results, admin, health,
    /// metrics. Keys are stored as SHA-256 hashes only; plaintext keys never reach the file.
    public struct HTTP: Sendable, Equatable {
        /// What an API key may do; every /v1 route needs exactly one of these.
        public enum Scope: String, Sendable, Hashable, CaseIterable {
            case evaluate, status, results, admin
            /// Enrols and confirms a user's factors (issue 25).
            case enroll
            /// Checks a user's code for a challenge and issues the mfaToken.
            case verify
        }

        public struct APIKey: Sendable, Equatable {
            /// For logs and metrics: which client called, never the key itself.
            public var name: String
            /// The 32-byte SHA-256 of the key's UTF-8 text (`sha256:<hex>` in the file).
            public var sha256: [UInt8]
            public var scopes: Set<Scope>
            public init(name: String, sha256: [UInt8], scopes: Set<Scope>) {
                self.name = name
                self.sha256 = sha256
                self.scopes = scopes
            }
        }

        /// The endpoints an operator may open to callers without a key.
        public static let openable: Set<String> = ["/healthz", "/readyz", "/metrics"]

        public var enabled = true
        public var host = "127.0.0.1"
        public var port = 8080
        public var tlsCertificate: String?
        public var tlsPrivateKey: String?
        /// Larger request bodies are refused with 413 before they are read whole.
        public var maxBodyBytes = 1 << 20
        /// How long a request waits for the pipeline (ms) before it answers 504.
        public var requestTimeout: Int64 = 2_000
        public var openEndpoints: Set<String> = ["/healthz"]
        public var apiKeys: [APIKey] = []
        /// /readyz reports not ready while any owned partition lags more events than this.
        public var readinessMaxLag: Int64 = 10_000
        /// A connection with no request in flight is closed after this long (ms).
        public var idleTimeout: Int64 = 60_000
        /// A request's headers must arrive within this long of the connection (or of the
        /// previous response), and its body within `bodyTimeout` of its headers (ms):
        /// a client that trickles bytes (slowloris) is disconnected.
        public var headerTimeout: Int64 = 10_000
        public var bodyTimeout: Int64 = 30_000
        /// Connections beyond this wait in the listen backlog.
        public var maxConnections = 1_024
        /// Per API key: a token bucket of `rateLimitBurst` requests refilled at
        /// `rateLimitPerSecond`; past it, 429 with Retry-After. 0 turns it off.
        public var rateLimitPerSecond = 100
        public var rateLimitBurst = 200
        /// How the other instances of the group reach this one (`https://host:port`), written
        /// to `topics.owners` for each task this instance runs; nil: none forward to it.
        public var advertisedURL: String?
        /// The hosted challenge page, `GET /challenge/{mfaEventId}` (README "The challenge
        /// page"): open to anyone with the link, so off unless turned on.
        public var challengePage = false
        /// Where the page posts the mfaToken (`mfaToken` form field) after a verified
        /// challenge; nil: it tells the user to return to the application.
        public var challengePageReturnURL: String?

        public var tlsEnabled: Bool { tlsCertificate != nil }
        public init() {}
    }

    /// README "Security model".
    public struct Security: Sendable, Equatable {
        /// The secret that keys challenge ids and the MAC on camfa's own input records
        /// (DaemonSecret.swift says where it is looked for when this is nil).
        public var secretFile: String?
    }

    /// The mfaToken (issue 25 item 3): the JWT camfa issues after a passed challenge.
    public struct Tokens: Sendable, Equatable {
        public struct Key: Sendable, Equatable {
            /// The JWS `kid`, unique among the keys.
            public var kid: String
            /// A P-256 private key in PEM, or `credential:NAME`.
            public var privateKey: String
            public init(kid: String, privateKey: String) {
                self.kid = kid
                self.privateKey = privateKey
            }
        }

        /// The `iss` claim.
        public var issuer = "urn:camfa"
        /// From issue to expiry (ms): short, because the business server exchanges the
        /// token for its own session at once.
        public var lifetime: Int64 = 5 * 60_000
        /// The first signs, every one verifies (rotation: add the new key first, drop the
        /// old one when its last token has expired). Empty: TokenKeyFiles.swift says where
        /// the key is looked for.
        public var keys: [Key] = []
    }

    /// Factors camfa checks itself (issue 25): enrolment and challenge verification.
    public struct Factors: Sendable, Equatable {
        /// The issuer label authenticator apps show for a TOTP factor (`otpauth://` URI).
        public var issuer = "camfa"
        /// Codes one challenge takes before it is used up (the user stays locked).
        public var attemptsPerChallenge = 5
        /// Refused codes in a row that lock the user out of verification for `lockout`.
        public var failuresPerUser = 10
        /// Milliseconds.
        public var lockout: Int64 = 15 * 60_000
        /// Milliseconds an email or SMS code answers.
        public var codeLifetime: Int64 = 5 * 60_000
        /// Codes camfa sends for one challenge.
        public var sendsPerChallenge = 3
        /// The face provider: camfa posts it a code by webhook, and it posts back its signed
        /// verdict (README "Face"); nil: face factors cannot be enrolled.
        public var face: Webhook?
        /// Where email codes go out; nil: email factors cannot be enrolled.
        public var email: Email?
        /// The SMS provider's webhook; nil: SMS factors cannot be enrolled.
        public var sms: Webhook?

        public var limits: VerificationLimits {
            VerificationLimits(attemptsPerChallenge: attemptsPerChallenge, failuresPerUser: failuresPerUser, lockout: lockout,
                               codeLifetime: codeLifetime, sendsPerChallenge: sendsPerChallenge)
        }

        /// An SMTP submission server (RFC 6409).
        public struct Email: Sendable, Equatable {
            public var host = ""
            public var port = 587
            /// STARTTLS before anything else is said (RFC 3207); only a server on loopback
            /// may be spoken to in clear.
            public var starttls = true
            public var username: String?
            /// A file holding the password, or `credential:NAME`.
            public var passwordFile: String?
            /// PEM CA certificates the server's certificate must chain to; nil: the system's.
            public var caFile: String?
            /// The From header, e.g. `camfa <mfa@example.com>`.
            public var from = ""
            public var subject = "Your sign-in code"
            /// Milliseconds for the whole exchange.
            public var timeout: Int64 = 10_000
        }

        /// A provider's HTTP endpoint, called with a JSON body signed by HMAC-SHA256
        /// (README "Code delivery").
        public struct Webhook: Sendable, Equatable {
            public var url = ""
            /// A file holding the shared signing secret, or `credential:NAME`.
            public var secretFile = ""
            /// Milliseconds.
            public var timeout: Int64 = 10_000
        }
    }

    public var kafka = Kafka()
    public var topics = Topics()
    public var security = Security()
    public var tokens = Tokens()
    public var factors = Factors()
    public var policies = "/etc/camfa/policies"
    public var stateDir = "/var/lib/camfa"
    public var engine = Engine()
    public var enrichment = Enrichment()
    public var checkpoint = Checkpoint()
    public var logging = Logging()
    public var http = HTTP()
    /// CloudEvents `source` of the MFA events.
    public var eventSource = "urn:camfa"

    public init() {}
}

public struct ConfigurationError: Error, Sendable, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int
    public var key: String
    public var message: String
    public var description: String { "\(file):\(line): \(key): \(message)" }
}

public struct ConfigurationErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigurationError]
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

extension Configuration {
    public static func load(file: String) throws(ConfigurationErrors) -> Configuration {
        guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
            throw ConfigurationErrors(errors: [ConfigurationError(file: file, line: 0, key: "-", message: "cannot read the file")])
        }
        return try parse(text, file: file)
    }

    public static func parse(_ text: String, file: String) throws(ConfigurationErrors) -> Configuration {
        var reader = ConfigReader(file: file)
        let config = reader.read(text)
        if !reader.errors.isEmpty { throw ConfigurationErrors(errors: reader.errors) }
        return config
    }
}

private struct ConfigReader {
    let file: String
    var errors: [ConfigurationError] = []

    mutating func fail(_ node: Node?, _ key: String, _ message: String) {
        errors.append(ConfigurationError(file: file, line: node?.mark?.line ?? 0, key: key, message: message))
    }

    mutating func read(_ text: String) -> Configuration {
        var c = Configuration()
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            fail(nil, "-", "YAML: \(error)")
            return c
        }
        guard let root else { return c }
        guard let map = root.mapping else { fail(root, "-", "the configuration must be a mapping"); return c }
        for (k, v) in map {
            let key = k.string ?? "?"
            switch key {
            case "kafka": section(v, key, ["bootstrap", "groupId", "properties"]) { r, name, node in
                switch name {
                case "bootstrap": if let s = r.string(node, "kafka.bootstrap") { c.kafka.bootstrap = s }
                case "groupId": if let s = r.string(node, "kafka.groupId") { c.kafka.groupId = s }
                default:
                    guard let pm = node.mapping else { r.fail(node, "kafka.properties", "must map librdkafka property names to values"); return }
                    for (pk, pv) in pm {
                        guard let name = pk.string, let value = pv.scalar?.string else {
                            r.fail(pv, "kafka.properties", "each property must be a name and a scalar value"); continue
                        }
                        // The group protocol and offset handling are what make delivery exact; not overridable.
                        if Self.managedKafkaProperties.contains(name) {
                            r.fail(pk, "kafka.properties.\(name)", "is set by camfa and cannot be overridden")
                        } else {
                            c.kafka.properties[name] = value
                        }
                    }
                }
            }
            case "topics": section(v, key, ["input", "output", "deadLetter", "results", "changelog", "repartition", "owners"]) { r, name, node in
                if name == "changelog" { c.topics.changelog = r.optionalPath(node, "topics.changelog"); return }
                if name == "owners" { c.topics.owners = r.optionalPath(node, "topics.owners"); return }
                if name == "repartition" { c.topics.repartition = r.optionalPath(node, "topics.repartition"); return }
                guard let s = r.string(node, "topics.\(name)"), !s.isEmpty else { return }
                switch name {
                case "input": c.topics.input = s
                case "output": c.topics.output = s
                case "deadLetter": c.topics.deadLetter = s
                default: c.topics.results = s
                }
            }
            case "policies": if let s = string(v, key) { c.policies = s }
            case "stateDir": if let s = string(v, key) { c.stateDir = s }
            case "eventSource": if let s = string(v, key) { c.eventSource = s }
            case "engine": section(v, key, ["allowedLateness", "maxFutureSkew", "maxMessageBytes", "maxIdentityBytes", "maxFieldBytes", "maxKeysPerKeyspace", "maxUsers", "maxParkedRecords", "maxParkedBytes"]) { r, name, node in
                switch name {
                case "allowedLateness": if let d = r.duration(node, "engine.allowedLateness") { c.engine.allowedLateness = d }
                case "maxFutureSkew": if let d = r.duration(node, "engine.maxFutureSkew") { c.engine.maxFutureSkew = d }
                case "maxIdentityBytes": if let n = r.int(node, "engine.maxIdentityBytes", min: 1) { c.engine.maxIdentityBytes = n }
                case "maxFieldBytes": if let n = r.int(node, "engine.maxFieldBytes", min: 16) { c.engine.maxFieldBytes = n }
                case "maxKeysPerKeyspace": if let n = r.int(node, "engine.maxKeysPerKeyspace", min: 1) { c.engine.maxKeysPerKeyspace = n }
                case "maxUsers": if let n = r.int(node, "engine.maxUsers", min: 1) { c.engine.maxUsers = n }
                case "maxParkedRecords": if let n = r.int(node, "engine.maxParkedRecords", min: 1) { c.engine.maxParkedRecords = n }
                case "maxParkedBytes": if let n = r.int(node, "engine.maxParkedBytes", min: 1 << 20) { c.engine.maxParkedBytes = n }
                default: if let n = r.int(node, "engine.maxMessageBytes", min: 1024) { c.engine.maxMessageBytes = n }
                }
            }
            case "enrichment":
                section(v, key, ["cityDatabase", "asnDatabase", "anonymousIPDatabase", "userAgentRules", "overwrite", "trustProducer", "userAgentCacheSize", "zones"]) { r, name, node in
                    switch name {
                    case "cityDatabase": c.enrichment.cityDatabase = r.optionalPath(node, "enrichment.cityDatabase")
                    case "asnDatabase": c.enrichment.asnDatabase = r.optionalPath(node, "enrichment.asnDatabase")
                    case "anonymousIPDatabase": c.enrichment.anonymousIPDatabase = r.optionalPath(node, "enrichment.anonymousIPDatabase")
                    case "userAgentRules": c.enrichment.userAgentRules = r.optionalPath(node, "enrichment.userAgentRules")
                    case "overwrite": if let b = r.bool(node, "enrichment.overwrite") { c.enrichment.overwrite = b }
                    case "trustProducer": if let b = r.bool(node, "enrichment.trustProducer") { c.enrichment.trustProducer = b }
                    case "userAgentCacheSize": if let n = r.int(node, "enrichment.userAgentCacheSize", min: 0) { c.enrichment.userAgentCacheSize = n }
                    default:
                        guard let zm = node.mapping else { r.fail(node, "enrichment.zones", "must map zone names to lists of CIDRs"); return }
                        for (zk, zv) in zm {
                            let zone = zk.string ?? "?"
                            guard let seq = zv.sequence else { r.fail(zv, "enrichment.zones.\(zone)", "must be a list of CIDRs"); continue }
                            c.enrichment.zones[zone] = seq.compactMap { $0.scalar?.string }
                        }
                    }
                }
            case "checkpoint": section(v, key, ["interval", "events"]) { r, name, node in
                if name == "interval" { if let d = r.duration(node, "checkpoint.interval") { c.checkpoint.interval = d } }
                else if let n = r.int(node, "checkpoint.events", min: 1) { c.checkpoint.events = n }
            }
            case "logging": section(v, key, ["level", "format", "personalData"]) { r, name, node in
                switch name {
                case "level":
                    if let s = r.string(node, "logging.level") {
                        if ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(s) { c.logging.level = s }
                        else { r.fail(node, "logging.level", "must be one of trace, debug, info, notice, warning, error, critical; got '\(s)'") }
                    }
                case "format":
                    if let s = r.string(node, "logging.format") {
                        if s == "text" || s == "json" { c.logging.format = s } else { r.fail(node, "logging.format", "must be text or json; got '\(s)'") }
                    }
                default: if let b = r.bool(node, "logging.personalData") { c.logging.personalData = b }
                }
            }
            case "http": readHTTP(v, into: &c.http)
            case "security": section(v, key, ["secretFile"]) { r, _, node in
                c.security.secretFile = r.optionalPath(node, "security.secretFile")
            }
            case "tokens": readTokens(v, into: &c.tokens)
            case "factors": section(v, key, ["issuer", "attemptsPerChallenge", "failuresPerUser", "lockout", "codeLifetime", "sendsPerChallenge", "email", "sms", "face"]) { r, name, node in
                switch name {
                case "codeLifetime":
                    guard let d = r.duration(node, "factors.codeLifetime") else { return }
                    if d >= 10_000 && d <= 3_600_000 { c.factors.codeLifetime = d } else { r.fail(node, "factors.codeLifetime", "must be between 10s and 1h") }
                case "sendsPerChallenge":
                    if let n = r.int(node, "factors.sendsPerChallenge", min: 1) {
                        if n <= 20 { c.factors.sendsPerChallenge = n } else { r.fail(node, "factors.sendsPerChallenge", "must be at most 20") }
                    }
                case "email": c.factors.email = r.readEmail(node)
                case "sms": c.factors.sms = r.readWebhook(node, "factors.sms")
                case "face": c.factors.face = r.readWebhook(node, "factors.face")
                case "issuer":
                    if let s = r.string(node, "factors.issuer") { if s.isEmpty { r.fail(node, "factors.issuer", "must not be empty") } else { c.factors.issuer = s } }
                case "attemptsPerChallenge":
                    if let n = r.int(node, "factors.attemptsPerChallenge", min: 1) {
                        if n <= 100 { c.factors.attemptsPerChallenge = n } else { r.fail(node, "factors.attemptsPerChallenge", "must be at most 100") }
                    }
                case "failuresPerUser":
                    if let n = r.int(node, "factors.failuresPerUser", min: 1) {
                        if n <= 1000 { c.factors.failuresPerUser = n } else { r.fail(node, "factors.failuresPerUser", "must be at most 1000") }
                    }
                default:
                    guard let d = r.duration(node, "factors.lockout") else { return }
                    if d >= 1_000 && d <= 24 * 3_600_000 { c.factors.lockout = d } else { r.fail(node, "factors.lockout", "must be between 1s and 24h") }
                }
            }
            default:
                fail(k, key, "unknown key (allowed: checkpoint, engine, enrichment, eventSource, factors, http, kafka, logging, policies, security, stateDir, tokens, topics)")
            }
        }
        return c
    }

    mutating func readHTTP(_ node: Node, into h: inout Configuration.HTTP) {
        let keys: Set<String> = ["enabled", "address", "tls", "maxBodyBytes", "requestTimeout", "openEndpoints", "apiKeys", "readiness",
                                 "idleTimeout", "headerTimeout", "bodyTimeout", "maxConnections", "rateLimit", "advertisedURL", "challengePage"]
        var out = h
        section(node, "http", keys) { r, name, node in
            switch name {
            case "enabled": if let b = r.bool(node, "http.enabled") { out.enabled = b }
            case "address":
                guard let s = r.string(node, "http.address") else { return }
                if let hp = Self.hostPort(s) { (out.host, out.port) = hp }
                else { r.fail(node, "http.address", "must be host:port with a port 0...65535 ([::1]:8080 for IPv6); got '\(s)'") }
            case "tls":
                r.section(node, "http.tls", ["certificate", "privateKey"]) { r, name, node in
                    if name == "certificate" { out.tlsCertificate = r.optionalPath(node, "http.tls.certificate") }
                    else { out.tlsPrivateKey = r.optionalPath(node, "http.tls.privateKey") }
                }
                if (out.tlsCertificate == nil) != (out.tlsPrivateKey == nil) {
                    r.fail(node, "http.tls", "needs both certificate and privateKey (or neither)")
                }
            case "maxBodyBytes": if let n = r.int(node, "http.maxBodyBytes", min: 1024) { out.maxBodyBytes = n }
            case "requestTimeout":
                if let d = r.duration(node, "http.requestTimeout") {
                    if d > 0 { out.requestTimeout = d } else { r.fail(node, "http.requestTimeout", "must be positive") }
                }
            case "idleTimeout", "headerTimeout", "bodyTimeout":
                guard let d = r.duration(node, "http.\(name)") else { return }
                guard d > 0 else { r.fail(node, "http.\(name)", "must be positive"); return }
                if name == "idleTimeout" { out.idleTimeout = d } else if name == "headerTimeout" { out.headerTimeout = d } else { out.bodyTimeout = d }
            case "maxConnections": if let n = r.int(node, "http.maxConnections", min: 1) { out.maxConnections = n }
            case "challengePage":
                r.section(node, "http.challengePage", ["enabled", "returnURL"]) { r, name, node in
                    if name == "enabled" { if let b = r.bool(node, "http.challengePage.enabled") { out.challengePage = b }; return }
                    guard let u = r.string(node, "http.challengePage.returnURL") else { return }
                    guard let url = URL(string: u), let scheme = url.scheme, url.host?.isEmpty == false, ["http", "https"].contains(scheme) else {
                        r.fail(node, "http.challengePage.returnURL", "must be an http(s) URL; got '\(u)'"); return
                    }
                    if scheme == "http" && !AdvertisedURL.isLoopback(host: url.host ?? "") {
                        r.fail(node, "http.challengePage.returnURL", "must be https (http only on loopback): the mfaToken goes there")
                    } else { out.challengePageReturnURL = u }
                }
            case "advertisedURL":
                guard let u = r.string(node, "http.advertisedURL") else { return }
                if AdvertisedURL.isValid(u) {
                    if AdvertisedURL.isClearOffLoopback(u) {
                        r.fail(node, "http.advertisedURL", "must be https (http only on loopback): forwarded requests carry the callers' API keys")
                    } else { out.advertisedURL = u }
                } else { r.fail(node, "http.advertisedURL", "must be http(s)://host:port with no path, e.g. https://camfa-2.internal:8080; got '\(u)'") }
            case "rateLimit":
                r.section(node, "http.rateLimit", ["perSecond", "burst"]) { r, name, node in
                    if name == "perSecond" { if let n = r.int(node, "http.rateLimit.perSecond", min: 0) { out.rateLimitPerSecond = n } }
                    else if let n = r.int(node, "http.rateLimit.burst", min: 1) { out.rateLimitBurst = n }
                }
            case "openEndpoints":
                guard let seq = node.sequence else { r.fail(node, "http.openEndpoints", "must be a list of paths"); return }
                var open: Set<String> = []
                for item in seq {
                    guard let path = item.scalar?.string, Configuration.HTTP.openable.contains(path) else {
                        r.fail(item, "http.openEndpoints", "'\(item.scalar?.string ?? "?")' cannot be opened (allowed: \(Configuration.HTTP.openable.sorted().joined(separator: ", ")))")
                        continue
                    }
                    open.insert(path)
                }
                out.openEndpoints = open
            case "apiKeys":
                guard let seq = node.sequence else { r.fail(node, "http.apiKeys", "must be a list of {name, hash, scopes}"); return }
                var names: Set<String> = []
                out.apiKeys = []
                for (i, item) in seq.enumerated() {
                    guard let key = r.apiKey(item, index: i) else { continue }
                    if !names.insert(key.name).inserted { r.fail(item, "http.apiKeys.\(key.name)", "duplicate key name"); continue }
                    out.apiKeys.append(key)
                }
                if Set(out.apiKeys.map(\.sha256)).count != out.apiKeys.count {
                    r.fail(node, "http.apiKeys", "two keys have the same hash")
                }
            default:
                r.section(node, "http.readiness", ["maxLag"]) { r, _, node in
                    if let n = r.int(node, "http.readiness.maxLag", min: 0) { out.readinessMaxLag = Int64(n) }
                }
            }
        }
        h = out
    }

    mutating func readEmail(_ node: Node) -> Configuration.Factors.Email? {
        var e = Configuration.Factors.Email()
        section(node, "factors.email", ["host", "port", "starttls", "username", "passwordFile", "caFile", "from", "subject", "timeout"]) { r, name, node in
            let key = "factors.email." + name
            switch name {
            case "host": e.host = r.string(node, key) ?? ""
            case "port":
                if let n = r.int(node, key, min: 1) { if n <= 65535 { e.port = n } else { r.fail(node, key, "must be at most 65535") } }
            case "starttls": e.starttls = r.bool(node, key) ?? true
            case "username": e.username = r.optionalPath(node, key)
            case "passwordFile": e.passwordFile = r.optionalPath(node, key)
            case "caFile": e.caFile = r.optionalPath(node, key)
            case "from":
                let f = r.string(node, key) ?? ""
                if f.contains(where: { $0 == "\r" || $0 == "\n" }) || !f.contains("@") { r.fail(node, key, "must be one address, e.g. camfa <mfa@example.com>") } else { e.from = f }
            case "subject":
                let t = r.string(node, key) ?? ""
                if t.isEmpty || t.contains(where: { $0 == "\r" || $0 == "\n" }) { r.fail(node, key, "must be one non-empty line") } else { e.subject = t }
            default:
                guard let d = r.duration(node, key) else { return }
                if d >= 1_000 && d <= 120_000 { e.timeout = d } else { r.fail(node, key, "must be between 1s and 2m") }
            }
        }
        if e.host.isEmpty { fail(node, "factors.email.host", "is required (the SMTP submission server)"); return nil }
        if e.from.isEmpty { fail(node, "factors.email.from", "is required (the From address of the codes)"); return nil }
        if (e.username == nil) != (e.passwordFile == nil) { fail(node, "factors.email.username", "username and passwordFile go together"); return nil }
        if !e.starttls, !["127.0.0.1", "::1", "localhost"].contains(e.host) {
            fail(node, "factors.email.starttls", "may be false only for a server on loopback: codes must not cross a network in clear"); return nil
        }
        return e
    }

    mutating func readWebhook(_ node: Node, _ path: String) -> Configuration.Factors.Webhook? {
        var w = Configuration.Factors.Webhook()
        section(node, path, ["url", "secretFile", "timeout"]) { r, name, node in
            let key = path + "." + name
            switch name {
            case "url": w.url = r.string(node, key) ?? ""
            case "secretFile": w.secretFile = r.optionalPath(node, key) ?? ""
            default:
                guard let d = r.duration(node, key) else { return }
                if d >= 1_000 && d <= 120_000 { w.timeout = d } else { r.fail(node, key, "must be between 1s and 2m") }
            }
        }
        guard let u = URL(string: w.url), let scheme = u.scheme, let host = u.host, !host.isEmpty else {
            fail(node, path + ".url", "is required (an http or https URL)"); return nil
        }
        if scheme != "https", !(scheme == "http" && ["127.0.0.1", "::1", "localhost"].contains(host)) {
            fail(node, path + ".url", "must be https (http only on loopback): codes must not cross a network in clear"); return nil
        }
        if w.secretFile.isEmpty { fail(node, path + ".secretFile", "is required (the signing secret's file or credential:NAME)"); return nil }
        return w
    }

    mutating func readTokens(_ node: Node, into t: inout Configuration.Tokens) {
        var out = t
        section(node, "tokens", ["issuer", "lifetime", "keys"]) { r, name, node in
            switch name {
            case "issuer": if let s = r.string(node, "tokens.issuer") { if s.isEmpty { r.fail(node, "tokens.issuer", "must not be empty") } else { out.issuer = s } }
            case "lifetime":
                guard let d = r.duration(node, "tokens.lifetime") else { return }
                if d >= 1_000 && d <= 24 * 3_600_000 { out.lifetime = d } else { r.fail(node, "tokens.lifetime", "must be between 1s and 24h") }
            default:
                guard let seq = node.sequence, !seq.isEmpty else { r.fail(node, "tokens.keys", "must be a non-empty list of {kid, privateKey}"); return }
                out.keys = []
                for (i, item) in seq.enumerated() {
                    guard let map = item.mapping else { r.fail(item, "tokens.keys[\(i)]", "must be a mapping {kid, privateKey}"); continue }
                    let path = "tokens.keys[\(i)]"
                    var kid: String?, file: String?
                    for (k, v) in map {
                        switch k.string {
                        case "kid": kid = r.string(v, path + ".kid")
                        case "privateKey": file = r.optionalPath(v, path + ".privateKey")
                        default: r.fail(k, "\(path).\(k.string ?? "?")", "unknown key (allowed: kid, privateKey)")
                        }
                    }
                    guard let kid, !kid.isEmpty else { r.fail(item, path + ".kid", "is required (a non-empty string)"); continue }
                    guard let file else { r.fail(item, path + ".privateKey", "is required (a PEM file or credential:NAME)"); continue }
                    if out.keys.contains(where: { $0.kid == kid }) { r.fail(item, path + ".kid", "duplicate kid '\(kid)'"); continue }
                    out.keys.append(.init(kid: kid, privateKey: file))
                }
            }
        }
        t = out
    }

    mutating func apiKey(_ node: Node, index: Int) -> Configuration.HTTP.APIKey? {
        guard let map = node.mapping else { fail(node, "http.apiKeys[\(index)]", "must be a mapping {name, hash, scopes}"); return nil }
        let name = map["name"]?.scalar?.string ?? ""
        let path = "http.apiKeys.\(name.isEmpty ? "[\(index)]" : name)"
        var hash: [UInt8]?
        var scopes: Set<Configuration.HTTP.Scope> = []
        var ok = true
        for (k, v) in map {
            switch k.string {
            case "name": if name.isEmpty { fail(v, path + ".name", "must be a non-empty string"); ok = false }
            case "hash":
                hash = (v.scalar?.string).flatMap(Self.sha256Hash)
                if hash == nil { fail(v, path + ".hash", "must be sha256:<64 hex digits> (camfa apikey prints one), never the key itself"); ok = false }
            case "scopes":
                guard let seq = v.sequence, !seq.isEmpty else { fail(v, path + ".scopes", "must be a non-empty list"); ok = false; continue }
                for item in seq {
                    if let s = (item.scalar?.string).flatMap(Configuration.HTTP.Scope.init(rawValue:)) { scopes.insert(s) } else {
                        fail(item, path + ".scopes", "unknown scope '\(item.scalar?.string ?? "?")' (allowed: admin, enroll, evaluate, results, status, verify)"); ok = false
                    }
                }
            default: fail(k, "\(path).\(k.string ?? "?")", "unknown key (allowed: hash, name, scopes)"); ok = false
            }
        }
        if map["name"] == nil { fail(node, path, "needs a name"); ok = false }
        if map["hash"] == nil { fail(node, path, "needs a hash"); ok = false }
        if map["scopes"] == nil { fail(node, path, "needs scopes"); ok = false }
        guard ok, let hash else { return nil }
        return Configuration.HTTP.APIKey(name: name, sha256: hash, scopes: scopes)
    }

    /// `sha256:<64 hex>` → the 32 bytes.
    static func sha256Hash(_ s: String) -> [UInt8]? {
        guard s.hasPrefix("sha256:") else { return nil }
        let hex = Array(s.utf8.dropFirst(7))
        guard hex.count == 64 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for i in stride(from: 0, to: 64, by: 2) {
            guard let hi = Self.hexDigit(hex[i]), let lo = Self.hexDigit(hex[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
        }
        return out
    }

    static func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// `host:port` or `[v6]:port`.
    static func hostPort(_ s: String) -> (String, Int)? {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        else if host.contains(":") { return nil }
        return host.isEmpty ? nil : (host, port)
    }

    static let managedKafkaProperties: Set<String> = [
        "group.id", "bootstrap.servers", "enable.auto.commit", "enable.auto.offset.store",
        "partition.assignment.strategy", "enable.idempotence", "acks",
    ]

    mutating func section(_ node: Node, _ name: String, _ allowed: Set<String>, _ body: (inout ConfigReader, String, Node) -> Void) {
        guard let map = node.mapping else { fail(node, name, "must be a mapping"); return }
        for (k, v) in map {
            let key = k.string ?? "?"
            if allowed.contains(key) { body(&self, key, v) } else {
                fail(k, "\(name).\(key)", "unknown key (allowed: \(allowed.sorted().joined(separator: ", ")))")
            }
        }
    }

    mutating func string(_ node: Node, _ key: String) -> String? {
        guard let s = node.scalar?.string else { fail(node, key, "must be a string"); return nil }
        return s
    }

    mutating func optionalPath(_ node: Node, _ key: String) -> String? {
        if let s = node.scalar?.string, s.isEmpty || s == "null" || s == "~" { return nil }
        return string(node, key)
    }

    mutating func bool(_ node: Node, _ key: String) -> Bool? {
        switch node.scalar?.string {
        case "true": return true
        case "false": return false
        default: fail(node, key, "must be true or false"); return nil
        }
    }

    mutating func int(_ node: Node, _ key: String, min: Int) -> Int? {
        guard let s = node.scalar?.string, let n = Int(s), n >= min else { fail(node, key, "must be an integer ≥ \(min)"); return nil }
        return n
    }

    mutating func duration(_ node: Node, _ key: String) -> Int64? {
        guard let s = node.scalar?.string, let d = DurationText.milliseconds(s) else {
            fail(node, key, "must be a duration like 500ms, 5s, 10m, 1h")
            return nil
        }
        return d
    }
}
