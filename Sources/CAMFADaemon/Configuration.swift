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
    }

    public struct Engine: Sendable, Equatable {
        public var allowedLateness: Int64 = 5 * 60_000
        /// Events stamped further than this ahead of the broker's timestamp are rejected.
        public var maxFutureSkew: Int64 = 5 * 60_000
        public var maxMessageBytes = 1 << 20
    }

    public struct Enrichment: Sendable, Equatable {
        public var cityDatabase: String? = "/var/lib/GeoIP/GeoLite2-City.mmdb"
        public var asnDatabase: String? = "/var/lib/GeoIP/GeoLite2-ASN.mmdb"
        public var anonymousIPDatabase: String? = "/var/lib/GeoIP/GeoIP2-Anonymous-IP.mmdb"
        public var userAgentRules: String? = "/usr/share/camfa/regexes.yaml"
        public var overwrite = false
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

    public var kafka = Kafka()
    public var topics = Topics()
    public var policies = "/etc/camfa/policies"
    public var stateDir = "/var/lib/camfa"
    public var engine = Engine()
    public var enrichment = Enrichment()
    public var checkpoint = Checkpoint()
    public var logging = Logging()
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
            case "topics": section(v, key, ["input", "output", "deadLetter", "results"]) { r, name, node in
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
            case "engine": section(v, key, ["allowedLateness", "maxFutureSkew", "maxMessageBytes"]) { r, name, node in
                switch name {
                case "allowedLateness": if let d = r.duration(node, "engine.allowedLateness") { c.engine.allowedLateness = d }
                case "maxFutureSkew": if let d = r.duration(node, "engine.maxFutureSkew") { c.engine.maxFutureSkew = d }
                default: if let n = r.int(node, "engine.maxMessageBytes", min: 1024) { c.engine.maxMessageBytes = n }
                }
            }
            case "enrichment":
                section(v, key, ["cityDatabase", "asnDatabase", "anonymousIPDatabase", "userAgentRules", "overwrite", "userAgentCacheSize", "zones"]) { r, name, node in
                    switch name {
                    case "cityDatabase": c.enrichment.cityDatabase = r.optionalPath(node, "enrichment.cityDatabase")
                    case "asnDatabase": c.enrichment.asnDatabase = r.optionalPath(node, "enrichment.asnDatabase")
                    case "anonymousIPDatabase": c.enrichment.anonymousIPDatabase = r.optionalPath(node, "enrichment.anonymousIPDatabase")
                    case "userAgentRules": c.enrichment.userAgentRules = r.optionalPath(node, "enrichment.userAgentRules")
                    case "overwrite": if let b = r.bool(node, "enrichment.overwrite") { c.enrichment.overwrite = b }
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
            default:
                fail(k, key, "unknown key (allowed: checkpoint, engine, enrichment, eventSource, kafka, logging, policies, stateDir, topics)")
            }
        }
        return c
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
