import CAMFACore
import CAMFADaemon
import CAMFAPolicyFiles
import Foundation
import Logging
import Testing
import CAMFATestSupport

/// reloadPolicies() refuses a set that does not load before it reaches the poll thread:
/// no Kafka needed. The swap itself is covered black-box (ReloadBlackBoxTests).
@Suite struct PolicyReloadTests {
    static var examples: String {
        packageRoot.appendingPathComponent("policies/examples").path
    }

    @Test func aBrokenSetIsRefusedWithEveryFileLineColumnError() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-reload-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "policy: a\njudgment: 'event.ip =='\n".write(to: dir.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        try "policy: b\nfilter: true\n  bad: [\n".write(to: dir.appendingPathComponent("b.yaml"), atomically: true, encoding: .utf8)
        var configuration = Configuration()
        configuration.policies = dir.path
        let running = try PolicyLoader.loadPolicySet(at: Self.examples)
        let pipeline = Pipeline(options: .init(configuration: configuration, policySet: running, enrichment: nil, secret: testSecret),
                                logger: Logger(label: "test"))
        do {
            _ = try await pipeline.reloadPolicies()
            Issue.record("a broken set was accepted")
        } catch {
            #expect(error.code == .reloadFailed)
            let lines = error.message.split(separator: "\n")
            #expect(lines.contains { $0.contains(#/a\.yaml:2:[0-9]+: /#) }, "\(error.message)")
            #expect(lines.contains { $0.contains(#/b\.yaml:[0-9]+:[0-9]+: /#) }, "\(error.message)")
        }
    }
}
