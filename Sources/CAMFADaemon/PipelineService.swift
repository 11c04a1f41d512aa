import Foundation
import Logging
import ServiceLifecycle

/// Runs a `Pipeline` on a dedicated thread (the poll thread must never be a cooperative
/// pool thread: it blocks in librdkafka) as a swift-service-lifecycle `Service`. Graceful
/// shutdown asks the loop to stop; `run` returns when it has flushed and committed.
public struct PipelineService: Service {
    public let pipeline: Pipeline

    public init(pipeline: Pipeline) { self.pipeline = pipeline }

    public func run() async throws {
        let pipeline = self.pipeline
        try await DedicatedThread.run(name: "camfa-poll", onGracefulShutdown: {
            pipeline.notifier?.stopping()
            pipeline.requestStop()
        }) {
            try pipeline.run()
        }
    }
}


/// Runs a blocking loop on its own thread for the lifetime of a `Service`. Blocking loops
/// (librdkafka polls, paced producers) must never occupy a cooperative-pool thread.
public enum DedicatedThread {
    public static func run(name: String, onGracefulShutdown: @escaping @Sendable () -> Void,
                           _ body: @escaping @Sendable () throws -> Void) async throws {
        // Cancellation comes when another service of the group fails (the HTTP listener
        // cannot bind, say): the loop must stop then too, or the process never exits.
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                    let thread = Thread {
                        do {
                            try body()
                            continuation.resume()
                        } catch {
                            continuation.resume(throwing: error)
                        }
                    }
                    thread.name = name
                    thread.stackSize = 8 << 20
                    thread.start()
                }
            } onGracefulShutdown: {
                onGracefulShutdown()
            }
        } onCancel: {
            onGracefulShutdown()
        }
    }

    /// The common case: a loop that polls a stop flag.
    public static func run(name: String, _ body: @escaping @Sendable (StopSignal) throws -> Void) async throws {
        let stop = StopSignal()
        try await run(name: name, onGracefulShutdown: { stop.set() }) { try body(stop) }
    }
}
