import CAMFACore

/// "Partition p of the input topic is processed by the instance at `url`, from ownership
/// period `epoch` on": what each instance writes to `topics.owners` (compacted, one
/// partition) when a task starts, so that any instance can forward a request for a user
/// to the instance that processes the user (README "Any instance answers").
///
/// The record is believed only with a valid MAC under the daemon secret (the one every
/// instance of the group shares): a forwarded request carries the caller's API key, so a
/// producer who could name a URL here would collect keys.
public struct OwnerRecord: Sendable, Equatable {
    public static let kind = "owner"

    public var partition: Int32
    /// The instance's `http.advertisedURL`, e.g. `https://camfa-2.internal:8080`.
    public var url: String
    /// The task's ownership period (the store's or changelog's fencing epoch), for
    /// operators reading the topic. Not used to order records: without a changelog it
    /// comes from each host's clock, which may be behind another host's.
    public var epoch: Int64
    /// Epoch ms of the announcement, for operators reading the topic.
    public var at: Int64

    public init(partition: Int32, url: String, epoch: Int64, at: Int64) {
        self.partition = partition
        self.url = url
        self.epoch = epoch
        self.at = at
    }

    /// One key per partition, so compaction keeps the latest owner of each.
    public var key: [UInt8] { Array(String(partition).utf8) }

    public var value: [UInt8] {
        JSONWriter.encode(.map(ValueMap([
            ("partition", .int(Int64(partition))), ("url", .string(url)), ("epoch", .int(epoch)), ("at", .int(at)),
        ])))
    }

    /// Key, value and signed headers, ready to produce.
    public func signed(with records: RecordAuthenticator) -> (key: [UInt8], value: [UInt8], headers: [(String, [UInt8]?)]) {
        let headers = records.sign(key: key, value: value, headers: [(InputHeaders.kind, Array(Self.kind.utf8))])
        return (key, value, headers)
    }

    public enum Refusal: Error, Sendable, Equatable {
        /// No `camfa.kind: owner` header with a valid MAC: not written by an instance.
        case unauthenticated
        case malformed(String)
    }

    /// Reads a record of the owners topic; a forged or broken one is refused, never believed.
    public static func read(key: [UInt8]?, value: [UInt8]?, headers: [(String, [UInt8]?)],
                            records: RecordAuthenticator) -> Result<OwnerRecord, Refusal> {
        guard let value, headers.contains(where: { $0.0 == InputHeaders.kind && $0.1 == Array(kind.utf8) }),
              records.verify(key: key, value: value, headers: headers) else { return .failure(.unauthenticated) }
        guard case .map(let m)? = try? JSONParser.parse(value, maxDepth: 2) else { return .failure(.malformed("the value is not a JSON object")) }
        guard case .int(let p)? = m[string: "partition"], let partition = Int32(exactly: p), partition >= 0 else {
            return .failure(.malformed("partition must be a non-negative integer"))
        }
        guard key == Array(String(partition).utf8) else { return .failure(.malformed("the key is not the partition")) }
        guard case .string(let url)? = m[string: "url"], AdvertisedURL.isValid(url) else { return .failure(.malformed("url must be an http(s) URL")) }
        guard case .int(let epoch)? = m[string: "epoch"], case .int(let at)? = m[string: "at"] else {
            return .failure(.malformed("epoch and at must be integers"))
        }
        return .success(OwnerRecord(partition: partition, url: url, epoch: epoch, at: at))
    }
}

/// Who processes each partition, as the owners topic says so far. Pure: the directory
/// feeds it the records it reads, in log order, and the latest record of a partition wins.
/// A record of an earlier owner that lands after its successor's (it announced just before
/// losing the task) is overwritten within `OwnerDirectory.reannounceInterval`, when every
/// instance announces its tasks again; meanwhile the stale owner answers not-owned.
public struct OwnerTable: Sendable, Equatable {
    public private(set) var owners: [Int32: OwnerRecord] = [:]

    public init() {}

    public mutating func apply(_ r: OwnerRecord) {
        owners[r.partition] = r
    }

    public func url(of partition: Int32) -> String? { owners[partition]?.url }
}

/// `http.advertisedURL`: scheme, host and port only, so a path can be appended.
public enum AdvertisedURL {
    public static func isValid(_ s: String) -> Bool {
        for scheme in ["http://", "https://"] where s.hasPrefix(scheme) {
            let rest = s.dropFirst(scheme.count)
            return !rest.isEmpty && !rest.contains("/") && !rest.contains("?") && !rest.contains("#") && !rest.contains("@")
                && !rest.contains(where: { $0.isWhitespace || $0.isNewline })
        }
        return false
    }

    /// Plain http to a host other than loopback: API keys would cross the network in clear.
    public static func isClearOffLoopback(_ s: String) -> Bool {
        guard s.hasPrefix("http://") else { return false }
        let authority = s.dropFirst("http://".count)
        let host: Substring
        if authority.hasPrefix("[") { host = authority.prefix { $0 != "]" }.dropFirst() } else { host = authority.prefix { $0 != ":" } }
        return !isLoopback(host: String(host))
    }

    public static func isLoopback(host: String) -> Bool { ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host) }
}
