import CAMFADaemon
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import Prometheus
import ServiceLifecycle

/// The HTTP surface as a swift-service-lifecycle `Service`: run it in the daemon's
/// ServiceGroup next to `PipelineService`; graceful shutdown stops accepting connections
/// and lets requests in progress finish.
public struct HTTPServerService: Service {
    let application: Application<RouterResponder<BasicRequestContext>>
    let address: String
    let logger: Logger

    /// - Parameters:
    ///   - registry: what /metrics exposes; `CAMFAMetrics.registry` unless a test isolates one.
    ///   - onListening: called with the bound port (useful with port 0).
    public init(configuration http: Configuration.HTTP, backend: any CAMFABackend, logger: Logger,
                registry: PrometheusCollectorRegistry = CAMFAMetrics.registry,
                onListening: (@Sendable (Int) async -> Void)? = nil) throws(HTTPServerError) {
        self.address = "\(http.host):\(http.port)"
        self.logger = logger
        let router = Router(context: BasicRequestContext.self)
        Routes(http: http, backend: backend, access: Access(http), registry: registry, logger: logger).register(on: router)
        let server: HTTPServerBuilder
        if let cert = http.tlsCertificate, let key = http.tlsPrivateKey {
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
                let tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
                server = try .tls(.http1(), tlsConfiguration: tls)
            } catch {
                throw HTTPServerError(message: "http.tls: cannot load \(cert) / \(key): \(error)")
            }
        } else {
            server = .http1()
        }
        application = Application(
            router: router, server: server,
            configuration: ApplicationConfiguration(address: .hostname(http.host, port: http.port), serverName: "camfa"),
            onServerRunning: { channel in
                logger.info("HTTP API listening", metadata: [
                    "address": "\(channel.localAddress?.description ?? "?")", "tls": "\(http.tlsEnabled)",
                ])
                if let port = channel.localAddress?.port { await onListening?(port) }
            },
            logger: logger)
    }

    public func run() async throws {
        do {
            try await application.run()
        } catch {
            // The group stops every service after this; say why before it does.
            logger.error("HTTP listener failed; the daemon stops", metadata: ["address": "\(address)", "error": "\(error)"])
            throw error
        }
    }
}

public struct HTTPServerError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
