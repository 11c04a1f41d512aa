// swift-tools-version: 6.1
import PackageDescription

// Module map (see README "Where things are"):
//   CAMFACore        pure engine: values, events, expressions, windows, policies, decisions
//   CAMFAPolicyFiles policy and flow YAML → CAMFACore model (file, line, column errors)
//   CAMFAEnrich      GeoIP/ASN (libmaxminddb), user agents (uap-core rules via PCRE2), network zones
//   CAMFASimulator   deterministic synthetic UEBA traffic with the DESIGN.md scenarios injected
//   CAMFAClient      for integrating services: MFA event filters, checkUserStatus with the fail mode, local mfaToken checks
//   CAMFAMiddleware  a Hummingbird 2 middleware that holds users with a pending challenge (401 + mfaTriggerData)
//   CAMFATokens      the mfaToken: ES256 JWTs signed and verified with jwt-kit, JWKS
//   CAMFAFactors     MFA factors camfa checks itself: TOTP (RFC 6238), base32
//   CAMFAStore       partition checkpoints and user MFA state in SQLite (WAL), with fencing
//   CAMFAKafka       librdkafka consumer, producer and the mock-cluster dev broker
//   CAMFADaemon      configuration, the Kafka → engine → Kafka pipeline, lifecycle
//   camfa            the CLI and the daemon wiring
//   camfa-bench      the benchmarks (engine, enrich, checkpoint, e2e), kept out of the product binary
let package = Package(
    name: "camfa",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "camfa", targets: ["camfa"]),
        .executable(name: "camfa-bench", targets: ["camfa-bench"]),
        .executable(name: "camfa-example-login", targets: ["camfa-example-login"]),
        .executable(name: "camfa-example-subscriber", targets: ["camfa-example-subscriber"]),
        .library(name: "CAMFACore", targets: ["CAMFACore"]),
        // Static, so `swift build --product CAMFAClient` builds the library on its own.
        .library(name: "CAMFAClient", type: .static, targets: ["CAMFAClient"]),
        .library(name: "CAMFAMiddleware", type: .static, targets: ["CAMFAMiddleware"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Already in the graph through hummingbird; named for the TLS listener's types.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // Already in the graph through hummingbird; named for the request-timeout handler's parts.
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // Already in the graph through hummingbird; named for the middleware's header names.
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(name: "CMaxMindDB", pkgConfig: "libmaxminddb", providers: [.apt(["libmaxminddb-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CPCRE2", pkgConfig: "libpcre2-8", providers: [.apt(["libpcre2-dev"])]),
        // SHA-256 of API keys from the system's OpenSSL, not a second crypto package.
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // TLS for SMTP's STARTTLS (issue 25), from the system's OpenSSL as above.
        .systemLibrary(name: "CLibSSL", pkgConfig: "libssl", providers: [.apt(["libssl-dev"])]),
        // glibc's malloc.h, for the benchmarks' heap figures (part of libc: nothing to install).
        .systemLibrary(name: "CGlibcMalloc"),
        .target(name: "CAMFACore"),
        .target(name: "CAMFAPolicyFiles", dependencies: ["CAMFACore", "Yams"]),
        .target(name: "CAMFAEnrich", dependencies: ["CAMFACore", "CMaxMindDB", "CPCRE2", "Yams"]),
        .target(name: "CAMFAStore", dependencies: ["CSQLite"]),
        .target(name: "CAMFASimulator", dependencies: ["CAMFACore"]),
        // What an integrating service links (issue 26): nothing of the engine or the daemon.
        .target(name: "CAMFAClient", dependencies: ["CAMFAKafka", "CAMFATokens"]),
        .target(name: "CAMFAMiddleware", dependencies: [
            "CAMFAClient", .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),
        // The mfaToken (issue 25): ES256 JWTs through jwt-kit, and the JWKS that publishes the keys.
        .target(name: "CAMFATokens", dependencies: ["CLibCrypto", .product(name: "JWTKit", package: "jwt-kit")]),
        // MFA factors camfa checks itself (issue 25): TOTP, with OpenSSL's HMAC-SHA-1.
        .target(name: "CAMFAFactors", dependencies: ["CLibCrypto"]),
        // Sending email and SMS codes (issue 25): SMTP with STARTTLS, signed webhooks.
        .target(name: "CAMFADelivery", dependencies: ["CAMFACore", "CLibSSL"]),
        .target(name: "CAMFAKafka", dependencies: ["CRdKafka", .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "CAMFADaemon",
            dependencies: [
                "CAMFACore", "CAMFAPolicyFiles", "CAMFAEnrich", "CAMFAKafka", "CAMFAStore", "CAMFAFactors", "CAMFADelivery", "Yams",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The HTTP surface: API mode, user status, MFA results, admin, health and metrics.
        .target(
            name: "CAMFAServer",
            dependencies: [
                "CAMFADaemon", "CAMFACore", "CAMFATokens", "CAMFAFactors", "CLibCrypto",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        .executableTarget(
            name: "camfa",
            dependencies: [
                "CAMFACore", "CAMFAPolicyFiles", "CAMFAEnrich", "CAMFAKafka", "CAMFASimulator", "CAMFADaemon",
                "CAMFAServer", "CAMFAClient", "CAMFATokens", "CAMFADelivery",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Runs the product binary (`camfa` beside it) as broker and daemon; glibc's malloc
        // introspection (CGlibcMalloc) is used here only.
        .executableTarget(
            name: "camfa-bench",
            dependencies: [
                "CAMFACore", "CAMFAPolicyFiles", "CAMFAEnrich", "CAMFAKafka", "CAMFASimulator", "CAMFADaemon",
                "CAMFAStore", "CGlibcMalloc",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        // Examples/ (issue 26 item 4): how a service integrates camfa; built with everything else.
        .executableTarget(
            name: "camfa-example-login", dependencies: ["CAMFAClient", "CAMFAMiddleware", .product(name: "Hummingbird", package: "hummingbird"),
                                                         .product(name: "HTTPTypes", package: "swift-http-types")],
            path: "Examples/LoginService"),
        .executableTarget(name: "camfa-example-subscriber", dependencies: ["CAMFAClient"], path: "Examples/Subscriber"),
        // libFuzzer targets for what producers, subscribers and policy authors control
        // (`make fuzz`); a plain build replays the committed corpus instead.
        .executableTarget(
            name: "camfa-fuzz",
            dependencies: ["CAMFACore", "CAMFADaemon", "CAMFAPolicyFiles"]
        ),
        // Scaffolding the test targets share (paths, the test secret, running tools).
        .target(name: "CAMFATestSupport", dependencies: ["CAMFACore", "CAMFADaemon"], path: "Tests/CAMFATestSupport"),
        .testTarget(name: "CAMFACoreTests", dependencies: ["CAMFATestSupport", "CAMFACore"]),
        .testTarget(name: "CAMFAPolicyFilesTests", dependencies: ["CAMFATestSupport", "CAMFAPolicyFiles", "CAMFACore"]),
        .testTarget(name: "CAMFAEnrichTests", dependencies: ["CAMFATestSupport", "CAMFAEnrich", "CAMFACore", "Yams"]),
        .testTarget(name: "CAMFAKafkaTests", dependencies: ["CAMFATestSupport", "CAMFAKafka"]),
        .testTarget(name: "CAMFASimulatorTests", dependencies: ["CAMFATestSupport", "CAMFASimulator", "CAMFACore", "CAMFAPolicyFiles"]),
        .testTarget(name: "CAMFADaemonTests", dependencies: ["CAMFATestSupport", "CAMFADaemon", "CAMFACore"]),
        .testTarget(name: "CAMFAStoreTests", dependencies: ["CAMFATestSupport", "CAMFAStore"]),
        .testTarget(name: "CAMFAFactorsTests", dependencies: ["CAMFATestSupport", "CAMFAFactors", "CAMFADelivery", "CAMFADaemon"]),
        .testTarget(name: "CAMFAClientTests", dependencies: ["CAMFAClient"]),
        .testTarget(name: "CAMFATokensTests", dependencies: ["CAMFATestSupport", "CAMFATokens"]),
        .testTarget(
            name: "CAMFAServerTests",
            dependencies: [
                "CAMFAServer", "CAMFADaemon", "CAMFACore", "CAMFAKafka", "CAMFAPolicyFiles", "CAMFATestSupport", "CAMFATokens", "CAMFADelivery",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(name: "CLITests", dependencies: [
            "CAMFATestSupport", "CAMFACore", "CAMFAKafka", "CAMFAClient", "CAMFATokens", "CAMFAMiddleware",
            .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
