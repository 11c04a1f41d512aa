import Foundation
import Testing
import CAMFATestSupport

/// The fuzz corpus (fuzz/corpus, seeds and inputs `make fuzz` found worth keeping) replayed
/// through each target on the plain build: a decoder change that traps on one of them fails
/// here, without libFuzzer.
@Suite struct FuzzCorpusTests {
    @Test(arguments: ["ueba", "mfa-result", "policy"])
    func theCorpusReplaysWithoutACrash(_ target: String) throws {
        let binary = try camfaBinary().deletingLastPathComponent().appendingPathComponent("camfa-fuzz")
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "camfa-fuzz is not built beside camfa")
        let dir = packageRoot.appendingPathComponent("fuzz/corpus/\(target)")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        #expect(files.count >= 3)
        let p = Process()
        p.executableURL = binary
        p.arguments = [target, dir.path]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(text.contains("\(target): \(files.count) inputs replayed"), "\(text)")
    }
}
