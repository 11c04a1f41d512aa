import CAMFACore
import Foundation

/// Requests from other threads (the HTTP surface) to the poll thread, which owns every
/// Kafka handle and all partition state. Callers enqueue here and wait; the poll loop
/// drains the queue every iteration (woken early through `wake`) and answers by request
/// id, from `Pipeline.serveRequests` or when it processes the request's own record.
///
/// Each request has a deadline: past it the caller gets `.timeout` and the waiter is
/// forgotten; a later answer finds no waiter and is dropped. The record a timed-out
/// request wrote to the input topic is still processed (it is in the log).
///
/// Latency: a status query is answered on the next loop iteration (the wakeup interrupts
/// the consumer's wait). An evaluation or result costs a produce (linger.ms 5, acks=all)
/// plus the fetch that brings the record back; a real broker answers that fetch as soon as
/// the record is written, librdkafka's mock broker only after `fetch.wait.max.ms` (500 ms
/// by default; the tests set 10). `not-owned` follows the delivery report, served at the
/// latest after one 100 ms poll wait.
final class PipelineMailbox: @unchecked Sendable {
    enum Request {
        /// A validated UEBA event to write to the input topic (key: `user`).
        case evaluate(id: String, json: [UInt8], user: String, flow: String?)
        case status(id: String, user: String)
        /// A validated MFA result to write to the input topic.
        case mfaResult(id: String, result: MFAResult)
        /// An admin release of the user, to write to the input topic.
        case release(id: String, user: String, time: Int64)
        /// A factor enrolment, confirmation or challenge verification, to write to the input topic.
        case factor(id: String, record: FactorRecord)
    }

    enum Reply {
        case evaluation(Evaluation)
        case status(MFAStatus)
        case mfaResult(MFAResultOutcome)
        case release(ReleaseOutcome)
        case factorEnrolled
        case factorConfirmed(FactorConfirmation)
        case challengeVerified(ChallengeVerification)
        case devicesRevoked(Int)
        /// A code was stored for the challenge; the factor's sealed address, to send it to.
        case codeIssued(sealedAddress: [UInt8], expiresAt: Int64)
    }

    typealias Answer = Result<Reply, PipelineRequestError>

    private let lock = NSLock()
    private var queue: [Request] = []
    private var waiters: [String: (continuation: CheckedContinuation<Answer, Never>, deadline: DispatchTime, timeout: Double)] = [:]
    private var accepting = false
    private var wake: (@Sendable () -> Void)?

    /// Opens the mailbox once the poll loop runs; `wake` interrupts its wait.
    func open(wake: @escaping @Sendable () -> Void) {
        lock.withLock {
            accepting = true
            self.wake = wake
        }
    }

    /// Refuses new requests and answers every waiting one with `.unavailable`.
    func close(reason: String) {
        let pending = lock.withLock { () -> [CheckedContinuation<Answer, Never>] in
            accepting = false
            wake = nil
            queue.removeAll()
            defer { waiters.removeAll() }
            return waiters.values.map(\.continuation)
        }
        for c in pending { c.resume(returning: .failure(PipelineRequestError(code: .unavailable, message: reason))) }
    }

    /// Enqueues `request` and waits for its answer, at most `timeout` seconds.
    func submit(_ request: Request, id: String, timeout: Double) async -> Answer {
        await withCheckedContinuation { (c: CheckedContinuation<Answer, Never>) in
            let deadline = DispatchTime.now() + max(0, timeout)
            let wake: (@Sendable () -> Void)? = lock.withLock {
                guard accepting else { return nil }
                waiters[id] = (c, deadline, timeout)
                queue.append(request)
                return self.wake
            }
            guard let wake else {
                c.resume(returning: .failure(PipelineRequestError(code: .unavailable, message: "the pipeline is not running")))
                return
            }
            wake()
            // A dispatch timer, not a task: the deadline holds even when the cooperative
            // pool is busy.
            DispatchQueue.global().asyncAfter(deadline: deadline) { [weak self] in
                self?.answer(id, .failure(Self.timedOut(timeout)))
            }
        }
    }

    /// Requests enqueued since the last call (poll thread).
    func take() -> [Request] {
        lock.withLock {
            guard !queue.isEmpty else { return [] }
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
    }

    /// Answers the waiter of `id`, if it still waits (any thread). An answer after the
    /// deadline is a timeout even when the timer has not run yet (a busy machine can delay
    /// it past the answer): the caller's deadline is the contract.
    func answer(_ id: String, _ answer: Answer) {
        guard let w = lock.withLock({ waiters.removeValue(forKey: id) }) else { return }
        w.continuation.resume(returning: DispatchTime.now() > w.deadline ? .failure(Self.timedOut(w.timeout)) : answer)
    }

    private static func timedOut(_ timeout: Double) -> PipelineRequestError {
        PipelineRequestError(code: .timeout, message: "no answer within \(timeout) s")
    }

    func isWaiting(_ id: String) -> Bool { lock.withLock { waiters[id] != nil } }
}

// MARK: - The backend contract (caller's side: any thread)

extension Pipeline: CAMFABackend {
    public func evaluate(eventJSON: [UInt8], flow: String?, timeout: Double) async throws(PipelineRequestError) -> Evaluation {
        // The poll thread replaces both on a policy reload, under this lock.
        let (options, engine) = reloads.lock.withLock { (self.options, self.engine) }
        let policySet = options.policySet
        let event: UEBAEvent
        do {
            event = try UEBAEvent.decode(json: eventJSON, maxBytes: options.configuration.engine.maxMessageBytes)
        } catch {
            throw PipelineRequestError(code: .invalid, message: error.message, field: error.field.isEmpty ? nil : error.field)
        }
        if let error = event.violation(of: options.configuration.engine.limits) {
            throw PipelineRequestError(code: .invalid, message: error.message, field: error.field)
        }
        if let flow {
            guard let f = policySet.flows.first(where: { $0.name == flow }), f.trigger == .http else {
                throw PipelineRequestError(code: .unknownFlow, message: "no flow named '\(flow)' with trigger http")
            }
            // An app with http flows of its own is not judged by the global ones.
            guard engine.flows(for: event.appId, trigger: .http).contains(where: { policySet.flows[$0].name == flow }) else {
                throw PipelineRequestError(code: .unknownFlow, message: "flow '\(flow)' does not cover this event's app")
            }
        }
        let id = UUID().uuidString
        let answer = await mailbox.submit(.evaluate(id: id, json: eventJSON, user: event.originalIdentity, flow: flow),
                                          id: id, timeout: timeout)
        guard case .evaluation(let e) = try answer.get() else { throw Self.mismatch }
        return e
    }

    public func mfaStatus(user: String, timeout: Double) async throws(PipelineRequestError) -> MFAStatus {
        guard !user.isEmpty else { throw PipelineRequestError(code: .invalid, message: "the user id is empty", field: "user") }
        let id = UUID().uuidString
        guard case .status(let s) = try await mailbox.submit(.status(id: id, user: user), id: id, timeout: timeout).get() else {
            throw Self.mismatch
        }
        return s
    }

    public func submitMFAResult(json: [UInt8], timeout: Double) async throws(PipelineRequestError) -> MFAResultOutcome {
        let result = try MFAResult.decode(json: json, receivedAt: Int64(Date().timeIntervalSince1970 * 1000))
        try result.check(options.configuration.engine.limits)
        let id = UUID().uuidString
        guard case .mfaResult(let o) = try await mailbox.submit(.mfaResult(id: id, result: result), id: id, timeout: timeout).get() else {
            throw Self.mismatch
        }
        return o
    }

    public func releaseUser(user: String, timeout: Double) async throws(PipelineRequestError) -> ReleaseOutcome {
        guard !user.isEmpty else { throw PipelineRequestError(code: .invalid, message: "the user id is empty", field: "user") }
        let id = UUID().uuidString
        let request = PipelineMailbox.Request.release(id: id, user: user, time: Int64(Date().timeIntervalSince1970 * 1000))
        guard case .release(let o) = try await mailbox.submit(request, id: id, timeout: timeout).get() else { throw Self.mismatch }
        return o
    }

    static var mismatch: PipelineRequestError {
        PipelineRequestError(code: .unavailable, message: "internal: the pipeline answered another kind of request")
    }
}
