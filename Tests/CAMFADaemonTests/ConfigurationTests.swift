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

    /// The commented `factors` block is the README's reference for code delivery: it must
    /// parse as written once uncommented, so the example cannot drift from the parser.
    @Test func theExampleFactorsBlockParsesWhenUncommented() throws {
        let text = try String(contentsOf: packageRoot.appendingPathComponent("deploy/camfa.yaml"), encoding: .utf8)
        var lines = text.components(separatedBy: "\n")
        let start = try #require(lines.firstIndex(of: "# factors:"))
        var i = start
        while i < lines.count, lines[i].hasPrefix("# ") {
            lines[i] = String(lines[i].dropFirst(2))
            i += 1
        }
        #expect(i - start > 10, "the block was found")
        let c = try Configuration.parse(lines.joined(separator: "\n"), file: "camfa.yaml")
        let email = try #require(c.factors.email)
        #expect(email.host == "smtp.example.com" && email.port == 587 && email.starttls)
        #expect(email.username == "camfa" && email.passwordFile == "credential:camfa-smtp-password")
        #expect(email.from == "camfa <mfa@example.com>")
        let sms = try #require(c.factors.sms)
        #expect(sms.url == "https://sms-relay.example.com/camfa" && sms.secretFile == "credential:camfa-sms-secret")
        #expect(c.factors.face?.url == "https://face.example.com/camfa" && c.factors.face?.secretFile == "credential:camfa-face-secret")
        #expect(c.factors.codeLifetime == 300_000 && c.factors.sendsPerChallenge == 3)
    }

    @Test func theChallengePageIsOffUnlessTurnedOnAndItsReturnURLIsHTTPS() throws {
        #expect(Configuration().http.challengePage == false)
        let c = try Configuration.parse("http:\n  challengePage:\n    enabled: true\n    returnURL: https://app.example.com/done\n", file: "c.yaml")
        #expect(c.http.challengePage && c.http.challengePageReturnURL == "https://app.example.com/done")
        do {
            _ = try Configuration.parse("http:\n  challengePage:\n    enabled: true\n    returnURL: http://app.example.com/done\n", file: "c.yaml")
            Issue.record("accepted a clear-text return URL off loopback")
        } catch {
            #expect(error.errors.map { "\($0.line):\($0.key)" } == ["4:http.challengePage.returnURL"])
        }
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
