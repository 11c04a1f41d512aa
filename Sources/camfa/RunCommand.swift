import ArgumentParser
import CAMFACore
import CAMFADaemon
import CAMFADelivery
import CAMFAEnrich
import CAMFAPolicyFiles
import CAMFAServer
import CAMFATokens
import Foundation
import Logging
import ServiceLifecycle

/// `camfa run`: the daemon.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run the daemon: consume UEBA events, publish MFA events.")

    @Option(help: "The configuration file.") var config: String?
    @Option(help: "Kafka bootstrap servers (overrides kafka.bootstrap).") var bootstrap: String?
    @Option(help: "Policy directory (overrides policies).") var policies: String?
    @Option(help: "State directory (overrides stateDir).") var stateDir: String?

    func run() async throws {
        let configuration = try DaemonSetup.configuration(file: config, bootstrap: bootstrap, policies: policies, stateDir: stateDir)
        DaemonLogging.bootstrap(configuration.logging)
        let logger = Logger(label: "camfa")
        // Before the pipeline exists: its metric objects bind to the factory bootstrapped here.
        CAMFAMetrics.bootstrap()
        let secret = try DaemonSetup.secret(configuration, logger: logger)
        let owners = OwnerDirectory(configuration: configuration, secret: secret, logger: logger)
        let pipeline = try DaemonSetup.pipeline(configuration, secret: secret, owners: owners, logger: logger)
        pipeline.notifier = SystemdNotifier()
        let keys = try DaemonSetup.keyPipeline(configuration, users: pipeline, secret: secret, logger: logger)
        pipeline.keyTasks = keys
        // SIGHUP, like POST /v1/admin/reload, reloads the key tasks too.
        let hangup = PolicyReloadSignal.install(pipeline, logger: logger)
        defer { hangup.cancel() }
        // Shut down in reverse: the HTTP listener first, the poll loops (final checkpoints) last.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = owners.map { [.init(service: OwnerDirectoryService(directory: $0))] } ?? []
        services += keys.map { [.init(service: PipelineService(pipeline: $0))] } ?? []
        services += [
            .init(service: PipelineService(pipeline: pipeline)),
            .init(service: ResultForwarderService(forwarder: ResultForwarder(configuration: configuration, secret: secret, logger: logger))),
        ]
        if configuration.http.enabled {
            let tokens = try await DaemonSetup.tokens(configuration, logger: logger)
            do {
                // The owner of a forwarded request may answer it and then deliver a code.
                let f = configuration.factors
                let delivery = [f.email?.timeout, f.sms?.timeout, f.face?.timeout].compactMap { $0 }.max() ?? 0
                let forwarding = Double(configuration.http.requestTimeout + delivery) / 1000 + 1
                services.append(.init(service: try HTTPServerService(configuration: configuration.http, backend: pipeline, tokens: tokens, logger: logger,
                                                                     forwardingTimeout: forwarding)))
            } catch {
                logger.error("cannot start the HTTP listener: \(error)")
                throw ExitCode(1)
            }
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

enum DaemonSetup {
    static func configuration(file: String?, bootstrap: String?, policies: String?, stateDir: String?) throws -> Configuration {
        var c = Configuration()
        if let file {
            do { c = try Configuration.load(file: file) } catch {
                for e in error.errors { printError(e.description) }
                throw ExitCode(1)
            }
        }
        if let bootstrap { c.kafka.bootstrap = bootstrap }
        if let policies { c.policies = policies }
        if let stateDir { c.stateDir = stateDir }
        do { return try c.resolvingCredentials() } catch {
            printError("\(file ?? "configuration"): \(error)")
            throw ExitCode(1)
        }
    }

    static func secret(_ c: Configuration, logger: Logger) throws -> DaemonSecret {
        do {
            let s = try DaemonSecret.load(c)
            logger.info("secret loaded", metadata: ["from": "\(s.origin)"])
            if s.origin.hasSuffix("(created)") {
                logger.notice("a new secret was created in the state directory; every instance of the group must share one (security.secretFile or the systemd credential camfa-secret)")
            }
            return s
        } catch {
            logger.error("cannot load the secret: \(error)")
            throw ExitCode(1)
        }
    }

    static func tokens(_ c: Configuration, logger: Logger) async throws -> MFATokens {
        do {
            let loaded = try TokenKeyFiles.load(c)
            logger.info("mfaToken keys loaded", metadata: ["from": "\(loaded.origin)", "kids": "\(loaded.keys.map(\.kid).joined(separator: ","))"])
            if loaded.created {
                logger.notice("a new mfaToken signing key was created in the state directory; instances that verify each other's tokens must share keys (tokens.keys or the systemd credential camfa-token-key)")
            }
            return try await TokenKeyFiles.tokens(c, loaded: loaded)
        } catch let error as SecretError {
            logger.error("cannot load the mfaToken keys: \(error)")
            throw ExitCode(1)
        } catch {
            logger.error("cannot load the mfaToken keys: \(error)")
            throw ExitCode(1)
        }
    }

    static func pipeline(_ c: Configuration, secret: DaemonSecret, owners: OwnerDirectory? = nil, logger: Logger) throws -> Pipeline {
        let set: PolicySet
        do { set = try PolicyLoader.loadPolicySet(at: c.policies, options: c.engine.options) } catch {
            for e in error.errors { logger.error("\(e.description)") }
            throw ExitCode(1)
        }
        let e = c.enrichment
        let resources: EnrichmentResources
        do {
            resources = try EnrichmentResources(configuration: e.resourcesConfiguration)
        } catch {
            logger.error("\(error)")
            throw ExitCode(1)
        }
        for w in resources.warnings { logger.warning("\(w)") }
        if set.needsRepartition && c.topics.repartition == nil {
            logger.warning("statistics keyed by something other than the user are counted per input partition: exact only on a one-partition input topic; set topics.repartition (README \"Repartitioning\")")
        }
        var options = Pipeline.Options(configuration: c, policySet: set, enrichment: resources, secret: secret)
        options.owners = owners
        do { options.codeSender = try CodeSender.configured(c.factors, clock: options.clock) } catch {
            logger.error("\(error)")
            throw ExitCode(1)
        }
        return Pipeline(options: options, logger: logger)
    }

    /// The key tasks (README "Repartitioning"): a pipeline of their own on the repartition
    /// topic, in a consumer group and a state directory of their own; nil when the policies
    /// need none or `topics.repartition` is not set.
    static func keyPipeline(_ c: Configuration, users: Pipeline, secret: DaemonSecret, logger: Logger) throws -> Pipeline? {
        guard let topic = c.topics.repartition, users.options.policySet.needsRepartition else { return nil }
        var k = c
        k.topics.input = topic
        // Their own changelog beside the users' (partitions as the repartition topic's), so a
        // key task moved to another host restores instead of re-reading every request.
        k.topics.changelog = c.topics.changelog.map { $0 + ".keys" }
        k.kafka.groupId = c.kafka.groupId + ".keys"
        k.stateDir = (c.stateDir as NSString).appendingPathComponent("keys")
        do { try FileManager.default.createDirectory(atPath: k.stateDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) } catch {
            logger.error("cannot create the key tasks' state directory \(k.stateDir): \(error)")
            throw ExitCode(1)
        }
        var options = Pipeline.Options(configuration: k, policySet: users.options.policySet, enrichment: nil, secret: secret)
        options.role = .keys(replyTopic: c.topics.input)
        return Pipeline(options: options, logger: logger)
    }
}
