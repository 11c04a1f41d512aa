import CAMFACore
import CAMFAEnrich

/// What every UEBA event passes before the engine judges it, in the daemon and in
/// `camfa replay`, so that an offline evaluation sees exactly what the daemon would:
/// decoding within `engine.maxMessageBytes`, the intake limits, the future bound against
/// camfa's clock, and enrichment (README "Security model": a producer's own geo, user agent
/// and zone are dropped unless `enrichment.trustProducer`).
public struct Intake {
    public let engine: Configuration.Engine
    public let trustProducer: Bool
    let enricher: Enricher?
    /// Epoch milliseconds; the daemon's injected clock.
    let clock: () -> Int64

    public struct Rejection: Error, Sendable, Equatable {
        /// The dead letter's reason: `invalid: <code>: <message>` or `future: …`.
        public var reason: String
        public var code: PipelineRequestError.Code
        /// The decoder's error (`wrongType`, `tooLong`, …) or `future`.
        public var detail: String
        /// The offending field, when there is one.
        public var field: String?

        static func invalid(_ error: EventDecodingError) -> Rejection {
            Rejection(reason: "invalid: \(error.code.rawValue): \(error.message)", code: .invalid, detail: error.code.rawValue,
                      field: error.field.isEmpty ? nil : error.field)
        }
    }

    public init(configuration: Configuration, enrichment: EnrichmentResources?, clock: @escaping () -> Int64) {
        engine = configuration.engine
        trustProducer = configuration.enrichment.trustProducer
        enricher = enrichment.map { Enricher(resources: $0) }
        self.clock = clock
    }

    /// The event, enriched, or why it is refused.
    public func admit(_ value: UnsafeRawBufferPointer) -> Result<UEBAEvent, Rejection> {
        var event: UEBAEvent
        do {
            event = try UEBAEvent.decode(json: value, maxBytes: engine.maxMessageBytes)
        } catch {
            return .failure(.invalid(error))
        }
        if let error = event.violation(of: engine.limits) { return .failure(.invalid(error)) }
        if let reason = Self.futureReason(field: "requestDate", time: event.requestDate, now: clock(), skew: engine.maxFutureSkew) {
            return .failure(Rejection(reason: reason, code: .outOfTime, detail: "future", field: "requestDate"))
        }
        // Trust boundary: enrichment is camfa's, unless the operator trusts producers with it.
        if !trustProducer {
            event.geo = nil
            event.userAgent = nil
            event.networkZone = nil
        }
        enricher?.enrich(&event)
        return .success(event)
    }

    /// Trust boundary: the bound is camfa's own clock, never a producer's timestamp (the
    /// record's CreateTime is the producer's to choose too).
    public static func futureReason(field: String, time: Int64, now: Int64, skew: Int64) -> String? {
        let (bound, overflow) = now.addingReportingOverflow(skew)
        guard !overflow, time > bound else { return nil }
        return "future: \(field) is \(time.subtractingReportingOverflow(now).partialValue) ms ahead of camfa's clock (engine.maxFutureSkew \(skew) ms)"
    }
}

extension Configuration.Enrichment {
    /// The enrichment library's settings from the daemon's configuration section.
    public var resourcesConfiguration: EnrichmentConfiguration {
        EnrichmentConfiguration(cityDatabase: cityDatabase, asnDatabase: asnDatabase, anonymousIPDatabase: anonymousIPDatabase,
                                userAgentRules: userAgentRules, zones: zones, overwrite: overwrite, userAgentCacheSize: userAgentCacheSize)
    }
}
