import Foundation
import Testing
import CAMFATestSupport

/// Issue 26: the client library builds on its own, without the engine, and the client
/// libraries' public API has DocC comments. The toolchain's
/// `swift-symbolgraph-extract` reads the modules this test run was built with; every public
/// symbol declared in the library's sources must carry a doc comment, and `docc convert
/// --analyze` over them must not warn (a parameter list that misses a parameter, a broken
/// symbol link).
@Suite struct ClientProductTests {
    static let modules = ["CAMFAClient", "CAMFAMiddleware"]

    /// `make test` runs `swift build --product CAMFAClient` first; the static archive holds
    /// the object files of every module the library needs, and nothing else.
    @Test func theClientLibraryCarriesNoEngineDaemonOrSQLite() throws {
        let archive = try camfaBinary().deletingLastPathComponent().appendingPathComponent("libCAMFAClient.a")
        guard FileManager.default.fileExists(atPath: archive.path) else {
            #expect(!isCI, "make test builds the product with `swift build --product CAMFAClient` before the tests")
            print("skipped: \(archive.path) is absent; run `swift build --product CAMFAClient`")
            return
        }
        let members = try #require(try runTool("ar", ["t", archive.path]), "ar (binutils) is missing")
        let modules = Set(members.stdout.split(separator: "\n").filter { $0.hasSuffix(".swiftmodule.o") }.map { String($0.dropLast(".swiftmodule.o".count)) })
        #expect(modules.isSuperset(of: ["CAMFAClient", "CAMFAKafka", "CAMFATokens"]), "\(modules.sorted())")
        let engine: Set = ["CAMFACore", "CAMFADaemon", "CAMFAStore", "CAMFAServer", "CAMFAEnrich", "CAMFAPolicyFiles", "CAMFAFactors", "Hummingbird"]
        #expect(modules.isDisjoint(with: engine), "the client library pulls in \(modules.intersection(engine).sorted())")
        let symbols = try #require(try runTool("nm", [archive.path]))
        #expect(!symbols.stdout.contains("sqlite3_"), "the client library refers to SQLite")
    }

    @Test(arguments: modules) func everyPublicSymbolIsDocumented(module: String) throws {
        guard let extract = which("swift-symbolgraph-extract"), let docc = which("docc") else {
            #expect(!isCI, "swift-symbolgraph-extract and docc come with the Swift toolchain")
            print("skipped: the toolchain's swift-symbolgraph-extract or docc is not on PATH")
            return
        }
        let modulesDir = try camfaBinary().deletingLastPathComponent().appendingPathComponent("Modules")
        let out = try TemporaryDirectory("camfa-docs")
        let root = URL(fileURLWithPath: out.path), graphs = root.appendingPathComponent("graphs")
        try FileManager.default.createDirectory(at: graphs, withIntermediateDirectories: true)
        #if arch(arm64)
        let target = "aarch64-unknown-linux-gnu"
        #else
        let target = "x86_64-unknown-linux-gnu"
        #endif
        var arguments = ["-module-name", module, "-I", modulesDir.path, "-target", target,
                         "-minimum-access-level", "public", "-output-dir", graphs.path]
        // The C modules the libraries import, directly or through their dependencies: the
        // package's own, SwiftPM's generated ones in the build directory, the checkouts'.
        let build = modulesDir.deletingLastPathComponent()
        var maps = ["CRdKafka", "CLibCrypto"].map { packageRoot.appendingPathComponent("Sources/\($0)/module.modulemap").path }
        let fm = FileManager.default
        for target in (try? fm.contentsOfDirectory(atPath: build.path)) ?? [] where target.hasSuffix(".build") {
            maps.append(build.appendingPathComponent("\(target)/module.modulemap").path)
        }
        let checkouts = build.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("checkouts")
        for package in (try? fm.contentsOfDirectory(atPath: checkouts.path)) ?? [] {
            let sources = checkouts.appendingPathComponent("\(package)/Sources")
            for target in (try? fm.contentsOfDirectory(atPath: sources.path)) ?? [] {
                maps += ["include/module.modulemap", "module.modulemap"].map { sources.appendingPathComponent("\(target)/\($0)").path }
            }
        }
        for map in maps where fm.fileExists(atPath: map) { arguments += ["-Xcc", "-fmodule-map-file=\(map)"] }
        let extracted = try #require(try runTool(extract, arguments))
        try #require(extracted.status == 0, "\(extracted.stderr)")

        let graph = try JSONSerialization.jsonObject(with: Data(contentsOf: graphs.appendingPathComponent("\(module).symbols.json"))) as? [String: Any]
        let symbols = graph?["symbols"] as? [[String: Any]] ?? []
        let own = symbols.filter { (($0["location"] as? [String: Any])?["uri"] as? String)?.contains("/Sources/\(module)/") == true }
        #expect(own.count >= 5, "the graph holds the module's symbols (\(own.count) of \(symbols.count))")
        let undocumented = own.filter { $0["docComment"] == nil }.map { s -> String in
            let path = (s["pathComponents"] as? [String] ?? []).joined(separator: ".")
            let location = s["location"] as? [String: Any]
            let file = (location?["uri"] as? String).map { URL(string: $0)?.lastPathComponent ?? $0 } ?? "?"
            let line = ((location?["position"] as? [String: Any])?["line"] as? Int).map { $0 + 1 } ?? 0
            return "\(file):\(line) \(path)"
        }
        #expect(undocumented.isEmpty, "public symbols without a doc comment:\n\(undocumented.joined(separator: "\n"))")

        let converted = try #require(try runTool(docc, [
            "convert", "--additional-symbol-graph-dir", graphs.path, "--fallback-display-name", module,
            "--fallback-bundle-identifier", "dev.camfa.\(module)", "--output-path", root.appendingPathComponent("\(module).doccarchive").path, "--analyze",
        ]))
        let warnings = (converted.stdout + converted.stderr).split(separator: "\n").filter { $0.hasPrefix("warning:") || $0.hasPrefix("error:") }
        #expect(converted.status == 0 && warnings.isEmpty, "docc: \(warnings.joined(separator: "\n"))\n\((converted.stdout + converted.stderr).suffix(3000))")
    }
}
