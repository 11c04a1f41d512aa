import Foundation
import Metrics
import Prometheus

/// The process's Prometheus registry behind swift-metrics. CAMFADaemon records through the
/// swift-metrics API only (PipelineMetrics); this is where those records become the text
/// that GET /metrics serves.
public enum CAMFAMetrics {
    public static let registry = PrometheusCollectorRegistry()

    private static let lock = NSLock()
    nonisolated(unsafe) private static var bootstrapped = false

    /// Installs the Prometheus factory once per process (swift-metrics allows one
    /// bootstrap). Call it before the pipeline is created: metric objects made earlier
    /// stay no-ops.
    public static func bootstrap() {
        lock.withLock {
            guard !bootstrapped else { return }
            bootstrapped = true
            var factory = PrometheusMetricsFactory(registry: registry)
            // Per-event processing is microseconds to milliseconds; checkpoints are
            // milliseconds to seconds.
            factory.durationHistogramBuckets["camfa_processing_seconds"] = [
                .microseconds(10), .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
                .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(250),
            ]
            factory.durationHistogramBuckets["camfa_checkpoint_seconds"] = [
                .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(100),
                .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
            ]
            MetricsSystem.bootstrap(factory)
        }
    }
}
