import CAMFADaemon
import Foundation
import Testing
import CAMFATestSupport

@Suite struct ConfigurationTests {
    @Test func theExampleConfigurationIsValid() throws {
        let c = try Configuration.load(file: packageRoot.appendingPathComponent("deploy/camfa.yaml").path)
        #expect(c.topics.input == "camfa.ueba")
        #expect(c.enrichment.zones["intranet"] == ["10.20.0.0/16"])
        #expect(c.engine.allowedLateness == 300_000)
        #expect(c.kafka.properties["session.timeout.ms"] == "45000")
    }

    @Test func unknownKeysAndBadValuesNameTheKeyAndLine() {
        let text = """
        kafka:
          bootstrap: b:1
          groupid: x
        topics:
          input: in
        engine:
          allowedLateness: soon
        logging:
          format: xml
        stateDirectory: /tmp
        """
        do {
            _ = try Configuration.parse(text, file: "c.yaml")
            Issue.record("accepted an invalid configuration")
        } catch {
            let keys = error.errors.map { "\($0.line):\($0.key)" }
            #expect(keys.contains("3:kafka.groupid"))
            #expect(keys.contains("7:engine.allowedLateness"))
            #expect(keys.contains("9:logging.format"))
            #expect(keys.contains("10:stateDirectory"))
            #expect(error.errors.count == 4)
        }
    }

    @Test func camfaOwnedKafkaPropertiesCannotBeOverridden() {
        do {
            _ = try Configuration.parse("kafka:\n  properties:\n    enable.auto.commit: \"true\"\n", file: "c.yaml")
            Issue.record("accepted enable.auto.commit")
        } catch {
            #expect(error.errors.first?.key == "kafka.properties.enable.auto.commit")
        }
    }

    /// The live-key caps reach the engine through the options the policy set is compiled
    /// with, at start and on every reload; zero is refused (it would evict every key).
    @Test func theLiveKeyCapsReachTheEngineOptions() throws {
        let c = try Configuration.parse("engine:\n  maxKeysPerKeyspace: 5000\n  maxUsers: 7000\n  allowedLateness: 2m\n", file: "c.yaml")
        #expect(c.engine.options.maxKeysPerKeyspace == 5000)
        #expect(c.engine.options.maxUsers == 7000)
        #expect(c.engine.options.allowedLateness == 120_000)
        do {
            _ = try Configuration.parse("engine:\n  maxUsers: 0\n", file: "c.yaml")
            Issue.record("accepted maxUsers: 0")
        } catch {
            #expect(error.errors.map(\.key) == ["engine.maxUsers"])
        }
    }

    @Test func defaultsWhenEmpty() throws {
        let c = try Configuration.parse("", file: "c.yaml")
        #expect(c == Configuration())
    }
}
