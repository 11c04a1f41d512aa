import CAMFACore
import CAMFAPolicyFiles
import Foundation
import Testing
import CAMFATestSupport

/// Writes YAML files into a fresh temporary directory and returns its path.
func policyDirectory(_ files: [String: String]) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    for (name, text) in files {
        try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
    }
    return dir.path
}

func loadSet(_ files: [String: String]) throws -> PolicySet {
    try PolicyLoader.loadPolicySet(at: try policyDirectory(files))
}

/// The errors of a policy directory that must not load.
func loadErrors(_ files: [String: String]) throws -> [PolicyError] {
    let dir = try policyDirectory(files)
    do {
        _ = try PolicyLoader.loadPolicySet(at: dir)
        return []
    } catch {
        return error.errors.map { e in
            var e = e
            e.location.file = (e.location.file as NSString).lastPathComponent
            return e
        }
    }
}

func event(
    _ user: String, at t: Int64, app: String = "portal", type: String = "login", result: String = "success",
    ip: String? = "203.0.113.7", city: String? = "Paris", custom: [(String, Value)] = []
) -> UEBAEvent {
    UEBAEvent(appId: app, requestDate: t, ip: ip, city: city, originalIdentity: user, behaviorType: type,
              behaviorResult: result, custom: ValueMap(custom))
}

/// Decisions of one event as compact strings: `flow:action[:methods]`, `flow:cooldown`.
func summary(_ outcome: EvaluationOutcome) -> [String] {
    switch outcome {
    case .rejected(let r): return ["rejected:\(r.code.rawValue)"]
    case .decided(let ds):
        return ds.map { d in
            if d.suppressedByCooldown { return "\(d.flow):cooldown" }
            if d.action == .mfa { return "\(d.flow):mfa:\(d.methods.map(\.rawValue).joined(separator: ","))" }
            return "\(d.flow):\(d.action.rawValue)"
        }
    }
}

