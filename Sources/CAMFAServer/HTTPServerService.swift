import CAMFADaemon
import CAMFATokens
import Foundation
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
    ///   - tokens: signs and verifies mfaTokens (`TokenKeyFiles`).
    ///   - clock: epoch milliseconds.
    ///   - forwardingTimeout: seconds a request forwarded to its user's instance may take
    ///     there (README "Any instance answers"); nil: `http.requestTimeout` and 1 s more.
    public init(configuration http: Configuration.HTTP, backend: any CAMFABackend, tokens: MFATokens, logger: Logger,
                registry: PrometheusCollectorRegistry = CAMFAMetrics.registry,
                clock: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) },
                forwardingTimeout: Double? = nil,
                onListening: (@Sendable (Int) async -> Void)? = nil) throws(HTTPServerError) {
        self.address = "\(http.host):\(http.port)"
        self.logger = logger
        let router = Router(context: BasicRequestContext.self)
        Routes(http: http, backend: backend, access: Access(http), registry: registry, tokens: tokens, clock: clock, logger: logger,
               forwarder: Forwarder(selfURL: http.advertisedURL, timeout: forwardingTimeout ?? Double(http.requestTimeout) / 1000 + 1)).register(on: router)
        let server: HTTPServerBuilder
        // Slow or idle clients cannot hold connections (RequestTimeoutHandler), and past
        // maxConnections new ones wait in the backlog instead of exhausting descriptors.
        let header = TimeAmount.milliseconds(http.headerTimeout), body = TimeAmount.milliseconds(http.bodyTimeout)
        let http1 = HTTP1Channel.Configuration(
            additionalChannelHandlers: [RequestTimeoutHandler(header: header, body: body)],
            idleTimeout: .milliseconds(http.idleTimeout),
            httpDecoderConfiguration: .init(maxHeaderFieldSize: 16 << 10, maxHeaderListSize: 64 << 10, maxHeaderFieldCount: 100))
        if let cert = http.tlsCertificate, let key = http.tlsPrivateKey {
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(cert).map { NIOSSLCertificateSource.certificate($0) }
                var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
                tls.minimumTLSVersion = .tlsv12
                server = try .tls(.http1(configuration: http1), tlsConfiguration: tls)
            } catch {
                throw HTTPServerError(message: "http.tls: cannot load \(cert) / \(key): \(error)")
            }
        } else {
            server = .http1(configuration: http1)
            if !Self.isLoopback(http.host) {
                logger.warning("the HTTP API listens without TLS on a non-loopback address: API keys and user ids cross the network in clear; set http.tls", metadata: ["address": "\(http.host):\(http.port)"])
            }
        }
        application = Application(
            router: router, server: server,
            configuration: ApplicationConfiguration(
                address: .hostname(http.host, port: http.port), serverName: "camfa",
                availableConnectionsDelegate: MaximumAvailableConnections(http.maxConnections, logger: logger)),
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

extension HTTPServerService {
    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }
}

public struct HTTPServerError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
