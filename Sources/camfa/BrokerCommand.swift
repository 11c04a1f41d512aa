import ArgumentParser
import CAMFAKafka
import Dispatch
import Foundation

/// `camfa broker`: librdkafka's mock cluster on loopback, for development and black-box
/// tests. Scripts read the first stdout line, `bootstrap=HOST:PORT[,HOST:PORT…]`.
struct BrokerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "Run an in-process mock Kafka cluster on loopback until SIGTERM or SIGINT.",
        discussion: """
            The first line on stdout is `bootstrap=HOST:PORT[,HOST:PORT…]`. Topics created (NAME:N: N partitions, else \
            --partitions): \(BrokerCommand.topics.joined(separator: ", ")). The mock keeps only about 5 MB \
            per partition and its first consumer group join takes about 3 s.
            """
    )

    static let topics = ["camfa.ueba", "authing.security.mfa", "camfa.ueba.dlq", "authing.security.mfa.result", "camfa.ueba.changelog", "camfa.ueba.repartition", "camfa.ueba.changelog.keys", "camfa.ueba.owners:1"]

    @Option(help: "Number of brokers.")
    var brokers: Int = 3

    @Option(help: "Partitions per topic.")
    var partitions: Int32 = 8

    @Option(name: .customLong("topic"), help: "An extra topic to create (repeatable), e.g. one per test; NAME:N gives it N partitions.")
    var extraTopics: [String] = []

    /// Fault injection for black-box tests: one command per stdin line, each answered with
    /// `ok` or `error: …` on stdout: `down B`, `up B`, `errors API COUNT ERROR_NAME`
    /// (API: produce, fetch, offsetCommit; ERROR_NAME as librdkafka names it, e.g.
    /// NOT_LEADER_FOR_PARTITION), `clear API`.
    @Flag(help: .hidden) var faultsOnStdin = false

    func validate() throws {
        guard brokers >= 1 else { throw ValidationError("--brokers must be at least 1") }
        guard partitions >= 1 else { throw ValidationError("--partitions must be at least 1") }
    }

    func run() throws {
        // Handle the signals through Dispatch rather than the default action, so the
        // cluster is torn down and the exit code is 0.
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let stop = DispatchSemaphore(value: 0)
        let sources = [SIGTERM, SIGINT].map { sig in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stop.signal() }
            source.resume()
            return source
        }

        let cluster = try MockCluster(brokers: brokers)
        for topic in Self.topics + extraTopics {
            var name = topic, count = partitions
            if let colon = topic.lastIndex(of: ":"), let n = Int32(topic[topic.index(after: colon)...]), n >= 1 {
                name = String(topic[..<colon])
                count = n
            }
            try cluster.createTopic(name, partitions: count, replicationFactor: Int32(min(brokers, 3)))
        }
        print("bootstrap=\(cluster.bootstrapServers)")
        fflush(nil)  // all streams: stdout is a pipe in scripts, so block-buffered
        // When stdin is a pipe, whatever started the broker holds its other end (a test run,
        // a script): end of input means it is gone, and the broker stops as on SIGTERM
        // rather than outlive it. A terminal or /dev/null never ends this way.
        var input = stat()
        if faultsOnStdin || (fstat(0, &input) == 0 && (input.st_mode & S_IFMT) == S_IFIFO) {
            let c = UncheckedCluster(cluster: cluster)
            let inject = faultsOnStdin
            Thread.detachNewThread {
                while let line = readLine() {
                    guard inject else { continue }
                    print(Self.inject(line, into: c.cluster))
                    fflush(nil)
                }
                stop.signal()
            }
        }

        stop.wait()
        sources.forEach { $0.cancel() }
        cluster.destroy()
    }

    static let apis: [String: KafkaAPIKey] = ["produce": .produce, "fetch": .fetch, "offsetCommit": .offsetCommit]
    static let errorCodes: [KafkaErrorCode] = [
        .notLeaderForPartition, .leaderNotAvailable, .requestTimedOut, .notCoordinator, .transport,
        .notEnoughReplicas, .unknownTopicOrPartition, .rebalanceInProgress,
    ]

    static func inject(_ line: String, into cluster: MockCluster) -> String {
        let words = line.split(separator: " ").map(String.init)
        do {
            switch (words.first, words.count) {
            case ("down", 2):
                guard let b = Int32(words[1]) else { return "error: bad broker id" }
                try cluster.setBrokerDown(b)
            case ("up", 2):
                guard let b = Int32(words[1]) else { return "error: bad broker id" }
                try cluster.setBrokerUp(b)
            case ("errors", 4):
                guard let api = apis[words[1]], let n = Int(words[2]), n > 0,
                      let code = errorCodes.first(where: { $0.name == words[3] }) else {
                    return "error: usage: errors produce|fetch|offsetCommit COUNT \(errorCodes.map(\.name).joined(separator: "|"))"
                }
                cluster.pushRequestErrors(api, Array(repeating: code, count: n))
            case ("clear", 2):
                guard let api = apis[words[1]] else { return "error: unknown api" }
                cluster.clearRequestErrors(api)
            default:
                return "error: unknown command"
            }
            return "ok"
        } catch {
            return "error: \(error)"
        }
    }
}

/// The cluster handle is used from the stdin thread; the mock's calls are thread-safe.
private struct UncheckedCluster: @unchecked Sendable { let cluster: MockCluster }
