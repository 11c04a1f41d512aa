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
            The first line on stdout is `bootstrap=HOST:PORT[,HOST:PORT…]`. Topics created: \
            \(BrokerCommand.topics.joined(separator: ", ")). The mock keeps only about 5 MB \
            per partition and its first consumer group join takes about 3 s.
            """
    )

    static let topics = ["camfa.ueba", "authing.security.mfa", "camfa.ueba.dlq", "authing.security.mfa.result"]

    @Option(help: "Number of brokers.")
    var brokers: Int = 3

    @Option(help: "Partitions per topic.")
    var partitions: Int32 = 8

    @Option(name: .customLong("topic"), help: "An extra topic to create (repeatable), e.g. one per test.")
    var extraTopics: [String] = []

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
            try cluster.createTopic(topic, partitions: partitions, replicationFactor: Int32(min(brokers, 3)))
        }
        print("bootstrap=\(cluster.bootstrapServers)")
        fflush(nil)  // all streams: stdout is a pipe in scripts, so block-buffered

        stop.wait()
        sources.forEach { $0.cancel() }
        cluster.destroy()
    }
}
