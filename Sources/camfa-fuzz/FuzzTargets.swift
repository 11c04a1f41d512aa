import CAMFACore
import CAMFADaemon
import CAMFAPolicyFiles
import Foundation

/// The inputs a producer, a subscriber or a policy author controls, each run through the
/// product's own decoder. A target passes when it returns (an error is an answer; a trap,
/// an overflow or a hang is a finding).
enum FuzzTarget: String, CaseIterable {
    case ueba, mfaResult = "mfa-result", policy

    static let limits = EventLimits()
    /// Default configuration, a fixed clock: runs are reproducible.
    nonisolated(unsafe) static let intake = Intake(configuration: Configuration(), enrichment: nil, clock: { 1_767_225_600_000 })

    func run(_ bytes: [UInt8]) {
        switch self {
        case .ueba:
            // The daemon's intake: decoding, the limits and the future bound (no enrichment).
            guard case .success(let event) = bytes.withUnsafeBytes({ Self.intake.admit($0) }) else { return }
            _ = event.jsonBytes()
        case .mfaResult:
            for receivedAt in [nil, Int64(1_767_225_600_000)] {
                guard let r = try? MFAResult.decode(json: bytes, receivedAt: receivedAt) else { continue }
                try? r.check(Self.limits)
                _ = r.json
            }
        case .policy:
            // Yams and the CEL checker over any text; a set that compiles also runs once.
            guard let set = try? PolicyLoader.loadPolicySet(text: String(decoding: bytes, as: UTF8.self), file: "fuzz.yaml") else { return }
            let engine = Engine(policySet: set, challengeKey: ChallengeKey(secret: Array("fuzz-secret-0123456789abcdef0123".utf8)))
            var state = PartitionState(policySet: set)
            let e = UEBAEvent(appId: "portal", requestDate: 1_767_225_600_000, ip: "203.0.113.7", city: "Paris", originalIdentity: "u",
                              behaviorType: "login", behaviorResult: "success")
            _ = engine.process(e, coordinates: "fuzz/0/0", state: &state)
        }
    }
}

#if FUZZING
// Built with `-sanitize=fuzzer -DFUZZING` (what `make fuzz` runs). SwiftPM links an
// executable's main to this module's @main, so that main hands over to libFuzzer's driver.
// CAMFA_FUZZ_TARGET picks the target: one binary, three corpora.
nonisolated(unsafe) var selected: FuzzTarget = .ueba

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@main
struct FuzzDriver {
    static func main() {
        let name = ProcessInfo.processInfo.environment["CAMFA_FUZZ_TARGET"] ?? "ueba"
        guard let t = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(Data("CAMFA_FUZZ_TARGET must be one of \(FuzzTarget.allCases.map(\.rawValue))\n".utf8))
            exit(2)
        }
        selected = t
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            selected.run(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
            return 0
        })
    }
}
#else
/// Without libFuzzer: replays corpus files, `camfa-fuzz TARGET FILE|DIR...`, so the
/// committed corpus (fuzz/corpus) is a regression test in `make test`.
@main
struct FuzzReplay {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        guard let name = args.first, let target = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(Data("usage: camfa-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) FILE|DIR...\n".utf8))
            exit(2)
        }
        var files: [String] = []
        for path in args.dropFirst() {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { continue }
            if isDir.boolValue {
                for f in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] { files.append(path + "/" + f) }
            } else {
                files.append(path)
            }
        }
        for f in files.sorted() {
            guard let data = FileManager.default.contents(atPath: f) else { continue }
            target.run([UInt8](data))
        }
        print("\(target.rawValue): \(files.count) inputs replayed")
    }
}
#endif
