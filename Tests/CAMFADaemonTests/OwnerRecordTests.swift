import CAMFADaemon
import Testing
import CAMFATestSupport

/// The owners topic's records (README "Any instance answers"): only a record with the
/// daemon secret's MAC names an owner, and the latest record of a partition wins.
@Suite struct OwnerRecordTests {
    let records = testSecret.records

    @Test func aSignedRecordReadsBack() throws {
        let r = OwnerRecord(partition: 5, url: "https://camfa-2.internal:8080", epoch: 1_780_000_000_000_000, at: 1_780_000_000_000)
        let (key, value, headers) = r.signed(with: records)
        #expect(key == Array("5".utf8))
        #expect(try OwnerRecord.read(key: key, value: value, headers: headers, records: records).get() == r)
    }

    @Test func forgedAndAlteredRecordsAreRefused() {
        let r = OwnerRecord(partition: 2, url: "http://127.0.0.1:8081", epoch: 7, at: 0)
        let (key, value, headers) = r.signed(with: records)
        let kind = [("camfa.kind", Array("owner".utf8) as [UInt8]?)]
        // No MAC, a MAC of another secret, a MAC moved to another URL, and another kind.
        #expect(OwnerRecord.read(key: key, value: value, headers: kind, records: records) == .failure(.unauthenticated))
        let other = DaemonSecret(bytes: Array("another-secret-0123456789abcdef!!".utf8), origin: "tests").records
        #expect(OwnerRecord.read(key: key, value: value, headers: headers, records: other) == .failure(.unauthenticated))
        let moved = OwnerRecord(partition: 2, url: "http://127.0.0.1:6666", epoch: 7, at: 0).value
        #expect(OwnerRecord.read(key: key, value: moved, headers: headers, records: records) == .failure(.unauthenticated))
        let relabelled = records.sign(key: key, value: value, headers: [("camfa.kind", Array("release".utf8))])
        #expect(OwnerRecord.read(key: key, value: value, headers: relabelled, records: records) == .failure(.unauthenticated))
        // Signed, but the key names another partition than the value.
        let wrongKey = Array("3".utf8)
        let signedWrongKey = records.sign(key: wrongKey, value: value, headers: kind)
        #expect(OwnerRecord.read(key: wrongKey, value: value, headers: signedWrongKey, records: records)
                == .failure(.malformed("the key is not the partition")))
    }

    /// Epochs come from each host's clock without a changelog: a successor on a host whose
    /// clock is behind must still win, so log order decides.
    @Test func theLatestRecordWinsWhateverItsEpoch() {
        var table = OwnerTable()
        table.apply(OwnerRecord(partition: 1, url: "http://127.0.0.1:1", epoch: 20, at: 0))
        table.apply(OwnerRecord(partition: 1, url: "http://127.0.0.1:2", epoch: 10, at: 0))
        #expect(table.url(of: 1) == "http://127.0.0.1:2")
        table.apply(OwnerRecord(partition: 0, url: "http://127.0.0.1:1", epoch: 5, at: 0))
        #expect(table.url(of: 0) == "http://127.0.0.1:1" && table.url(of: 2) == nil)
    }

    @Test func advertisedURLsAreSchemeHostAndPort() throws {
        #expect(AdvertisedURL.isValid("https://camfa-2.internal:8080"))
        #expect(AdvertisedURL.isValid("http://[::1]:8080"))
        for bad in ["camfa-2:8080", "https://h:1/path", "https://user@h:1", "ftp://h:1", "https://", "https://h:1?x", "https://h :1"] {
            #expect(!AdvertisedURL.isValid(bad), "\(bad)")
        }
        #expect(AdvertisedURL.isClearOffLoopback("http://10.0.0.2:8080"))
        #expect(!AdvertisedURL.isClearOffLoopback("http://127.0.0.1:8080"))
        #expect(!AdvertisedURL.isClearOffLoopback("http://[::1]:8080"))
        #expect(!AdvertisedURL.isClearOffLoopback("https://10.0.0.2:8080"))

        let c = try Configuration.parse("""
        topics:
          owners: camfa.ueba.owners
        http:
          advertisedURL: https://camfa-2.internal:8080
        """, file: "c.yaml")
        #expect(c.topics.owners == "camfa.ueba.owners" && c.http.advertisedURL == "https://camfa-2.internal:8080")
        do {
            _ = try Configuration.parse("http:\n  advertisedURL: http://10.0.0.2:8080\n", file: "c.yaml")
            Issue.record("accepted a clear-text advertised URL off loopback")
        } catch {
            #expect(error.errors.map { "\($0.line):\($0.key)" } == ["2:http.advertisedURL"])
        }
    }
}
