import CAMFACore
import CAMFAPolicyFiles
import Dispatch
import Foundation
import Logging

/// Policy hot reload (SIGHUP, `POST /v1/admin/reload`). The new set is loaded and compiled
/// off the poll thread; an invalid one is refused with every `file:line:col` error and the
/// running set stays. A valid one waits in `PolicyReloadSlot` until the poll thread takes it
/// between two records, so every event is judged wholly by the old set or wholly by the
/// new one, and each partition's state moves to the new set in the same step.
extension Pipeline {
    /// How long a loaded set may wait for the poll thread before the reload reports the
    /// pipeline unavailable (not started, or stopped).
    static let reloadPickupTimeout: Double = 10

    public func reloadPolicies() async throws(PipelineRequestError) -> ReloadReport {
        // `options` is written by the poll thread only under the slot's lock (the swap).
        let (directory, engineOptions) = reloads.lock.withLock {
            (options.configuration.policies, options.configuration.engine.options)
        }
        let set: PolicySet
        do {
            set = try PolicyLoader.loadPolicySet(at: directory, options: engineOptions)
        } catch {
            let lines = error.errors.map(\.description)
            logger.error("policy reload refused; the running policies stay", metadata: [
                "directory": "\(directory)", "errors": "\(lines.count)", "error": "\(lines.joined(separator: "; "))",
            ])
            throw PipelineRequestError(code: .reloadFailed, message: lines.joined(separator: "\n"))
        }
        // Key tasks first: a statistic the new set adds is sent only once the users' tasks
        // have it, and by then the key tasks resolve it (README "Repartitioning").
        if let keyTasks { _ = try await keyTasks.reloadPolicies() }
        let result: Result<ReloadReport, PipelineRequestError> = await withCheckedContinuation { continuation in
            reloads.offer(set) { continuation.resume(returning: $0) }
            DispatchQueue.global().asyncAfter(deadline: .now() + Self.reloadPickupTimeout) { [reloads] in
                reloads.expire()
            }
        }
        return try result.get()
    }

    /// Poll thread, once per loop iteration: swaps in a loaded set, if one waits.
    func applyPendingReload() {
        guard let (set, waiters) = reloads.take() else { return }
        let start = DispatchTime.now().uptimeNanoseconds
        var migrated: [Int32: PartitionState] = [:]
        var failure: String?
        for (p, rt) in partitions {
            do {
                migrated[p] = try rt.state.migrated(to: set)
            } catch {
                failure = "partition \(p): its state does not carry over: \(error)"
                break
            }
        }
        if let failure {
            // Not expected (the codec reads what it wrote); refusing keeps old set and state
            // consistent with each other.
            logger.error("policy reload refused; the running policies stay", metadata: ["error": "\(failure)"])
            for w in waiters { w(.failure(PipelineRequestError(code: .reloadFailed, message: failure))) }
            return
        }
        for (p, state) in migrated { partitions[p]!.state = state }
        reloads.lock.withLock {
            options.policySet = set
            engine = Engine(policySet: set, challengeKey: options.secret.challengeKey)
        }
        if case .users = options.role, set.needsRepartition != (repartition != nil), options.configuration.topics.repartition != nil {
            logger.warning("the reloaded policies \(set.needsRepartition ? "need" : "no longer need") the key tasks; that takes a restart (README \"Repartitioning\")")
        }
        let report = ReloadReport(policies: set.policies.count, flows: set.flows.count)
        logger.notice("policies reloaded", metadata: [
            "policies": "\(report.policies)", "flows": "\(report.flows)", "partitions": "\(migrated.count)",
            "seconds": "\(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)",
        ])
        for w in waiters { w(.success(report)) }
    }
}

/// The hand-over between a reload request and the poll thread: at most one loaded set waits;
/// a newer one replaces it (it was read from disk later) and its waiters are answered by
/// whichever set is finally swapped in.
final class PolicyReloadSlot: @unchecked Sendable {
    typealias Waiter = @Sendable (Result<ReloadReport, PipelineRequestError>) -> Void

    let lock = NSLock()
    private var pending: PolicySet?
    private var waiters: [(id: Int, answer: Waiter)] = []
    private var nextId = 0
    private var offered: [Int: UInt64] = [:]

    func offer(_ set: PolicySet, _ answer: @escaping Waiter) {
        lock.withLock {
            pending = set
            waiters.append((nextId, answer))
            offered[nextId] = DispatchTime.now().uptimeNanoseconds
            nextId += 1
        }
    }

    func take() -> (PolicySet, [Waiter])? {
        lock.withLock {
            guard let set = pending else { return nil }
            pending = nil
            defer { waiters.removeAll(); offered.removeAll() }
            return (set, waiters.map(\.answer))
        }
    }

    /// Answers the waiters that have waited longer than the pickup timeout; when none is
    /// left, the set is withdrawn.
    func expire() {
        let limit = UInt64(Pipeline.reloadPickupTimeout * 1e9) - 50_000_000
        let now = DispatchTime.now().uptimeNanoseconds
        let late: [Waiter] = lock.withLock {
            let ids = Set(offered.filter { now &- $0.value >= limit }.keys)
            let late = waiters.filter { ids.contains($0.id) }.map(\.answer)
            waiters.removeAll { ids.contains($0.id) }
            for id in ids { offered.removeValue(forKey: id) }
            if waiters.isEmpty { pending = nil }
            return late
        }
        for w in late {
            w(.failure(PipelineRequestError(code: .unavailable, message: "the pipeline is not running; the policies were not reloaded")))
        }
    }
}

/// SIGHUP → `reloadPolicies()`, the systemd convention (`systemctl reload camfa`).
public enum PolicyReloadSignal {
    /// Replaces SIGHUP's default action (terminate) with a reload; keep the returned source
    /// alive for as long as the daemon runs.
    public static func install(_ pipeline: Pipeline, logger: Logger) -> DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "camfa-sighup"))
        source.setEventHandler {
            logger.info("SIGHUP: reloading policies")
            Task {
                // Outcomes are logged by reloadPolicies itself, with counts or errors.
                let outcome: String
                do throws(PipelineRequestError) {
                    let r = try await pipeline.reloadPolicies()
                    outcome = "policies reloaded: \(r.policies) policies, \(r.flows) flows"
                } catch {
                    outcome = "policy reload refused (\(error.code.rawValue)); the previous policies run"
                }
                pipeline.notifier?.status(outcome)
            }
        }
        source.resume()
        return source
    }
}
