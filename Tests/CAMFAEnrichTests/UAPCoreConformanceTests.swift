import CAMFAEnrich
import Foundation
import Testing
import Yams

/// One case of uap-core's tests/*.yaml: the UA string and the expected fields
/// (nil = the YAML's empty value).
struct ConformanceCase {
    var userAgent: String
    var fields: [String: String?]
    var line: Int
}

/// Reads the conformance files' fixed shape ("  - user_agent_string: ..." followed by
/// "    key: value" lines, values single- or double-quoted or empty). Yams needs tens of
/// seconds for the 3.3 MB test_device.yaml in a debug build; this takes milliseconds.
/// `lineReaderAgreesWithYams` checks it against Yams on the two smaller files.
enum ConformanceFile {
    static func load(_ path: String) throws -> [ConformanceCase] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var cases: [ConformanceCase] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(rawLine)
            while line.last == "\r" || line.last == " " { line.removeLast() }
            let trimmed = line.drop { $0 == " " }
            if trimmed.isEmpty || trimmed.hasPrefix("#") || line == "test_cases:" { continue }
            let isNewCase = trimmed.hasPrefix("- ")
            let body = isNewCase ? trimmed.dropFirst(2) : trimmed
            guard let colon = body.firstIndex(of: ":") else {
                throw ConformanceFileError(message: "\(path):\(index + 1): unexpected line \(line)")
            }
            let key = String(body[..<colon])
            let rest = body[body.index(after: colon)...].drop { $0 == " " }
            let value = try unquote(rest, at: "\(path):\(index + 1)")
            if isNewCase {
                guard key == "user_agent_string", let value else {
                    throw ConformanceFileError(message: "\(path):\(index + 1): case without user_agent_string")
                }
                cases.append(ConformanceCase(userAgent: value, fields: [:], line: index + 1))
            } else {
                guard !cases.isEmpty else {
                    throw ConformanceFileError(message: "\(path):\(index + 1): field before the first case")
                }
                cases[cases.count - 1].fields[key] = .some(value)
            }
        }
        return cases
    }

    static func unquote(_ text: Substring, at location: String) throws -> String? {
        if text.isEmpty || text == "~" || text == "null" { return nil }
        if text.first == "'" && text.last == "'" && text.count >= 2 {
            return text.dropFirst().dropLast().replacingOccurrences(of: "''", with: "'")
        }
        if text.first == "\"" && text.last == "\"" && text.count >= 2 {
            var out = ""
            var escaped = false
            for c in text.dropFirst().dropLast() {
                if escaped {
                    switch c {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    default: out.append(c)
                    }
                    escaped = false
                } else if c == "\\" {
                    escaped = true
                } else {
                    out.append(c)
                }
            }
            return out
        }
        throw ConformanceFileError(message: "\(location): unsupported value \(text)")
    }
}

struct ConformanceFileError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

@Suite("uap-core conformance", .enabled(if: TestData.shouldRun, Comment(rawValue: TestData.skipMessage)))
struct UAPCoreConformanceTests {
    static let rules: UserAgentRules? = {
        guard let dir = TestData.root else { return nil }
        return try? UserAgentRules(path: dir + "/uap-core/regexes.yaml")
    }()

    /// Cases this parser is known to answer differently from the suite, with why.
    /// Everything not listed must pass; a listed case that starts passing fails the
    /// test too, so the list cannot go stale.
    static let knownFailures: [String: [String: String]] = [
        "test_ua.yaml": [:],
        "test_os.yaml": [:],
        "test_device.yaml": [:],
    ]

    func run(_ file: String, _ fields: [String], extract: (ParsedUserAgent) -> [String: String?]) throws {
        let rulesPath = try TestData.require("uap-core/regexes.yaml")
        let rules = try #require(Self.rules, "regexes.yaml failed to load: \(rulesPath)")
        let parser = UserAgentParser(rules: rules, cacheCapacity: 0)
        let cases = try ConformanceFile.load(try TestData.require("uap-core/\(file)"))
        let known = Self.knownFailures[file] ?? [:]
        var passed = 0
        var failures: [String] = []
        var stillFailingKnown = Set<String>()
        for testCase in cases {
            let got = extract(parser.parseUncached(testCase.userAgent))
            var mismatches: [String] = []
            for field in fields {
                let want: String?? = testCase.fields[field]
                let wanted: String? = want ?? nil
                if got[field] ?? nil != wanted {
                    mismatches.append("\(field): got \(String(describing: got[field] ?? nil)), want \(String(describing: wanted))")
                }
            }
            if mismatches.isEmpty {
                passed += 1
            } else if known[testCase.userAgent] != nil {
                stillFailingKnown.insert(testCase.userAgent)
            } else {
                failures.append("line \(testCase.line): \(testCase.userAgent)\n    " + mismatches.joined(separator: "; "))
            }
        }
        print("uap-core \(file): \(passed)/\(cases.count) passed (\(stillFailingKnown.count) known failures)")
        #expect(parser.abandonedMatches == 0, "\(file): PCRE2 abandoned \(parser.abandonedMatches) searches")
        #expect(cases.count > 400, "\(file): suspiciously few cases read")
        #expect(failures.isEmpty, "\(file): \(failures.count) unexpected failures:\n\(failures.prefix(40).joined(separator: "\n"))")
        let fixed = Set(known.keys).subtracting(stillFailingKnown)
        #expect(fixed.isEmpty, "\(file): listed as known failures but now pass: \(fixed.sorted())")
    }

    @Test func userAgents() throws {
        try run("test_ua.yaml", ["family", "major", "minor", "patch"]) { p in
            ["family": p.browser.family, "major": p.browser.major, "minor": p.browser.minor, "patch": p.browser.patch]
        }
    }

    @Test func operatingSystems() throws {
        try run("test_os.yaml", ["family", "major", "minor", "patch", "patch_minor"]) { p in
            ["family": p.os.family, "major": p.os.major, "minor": p.os.minor, "patch": p.os.patch,
             "patch_minor": p.os.patchMinor]
        }
    }

    @Test func devices() throws {
        try run("test_device.yaml", ["family", "brand", "model"]) { p in
            ["family": p.device.family, "brand": p.device.brand, "model": p.device.model]
        }
    }

    @Test func rulesAreJITCompiledWherePossible() throws {
        let rules = try #require(Self.rules)
        #expect(rules.ruleCount > 1000)
        print("uap-core rules: \(rules.ruleCount) patterns, \(rules.jitCompiledCount) JIT-compiled, \(rules.prefilteredCount) with a literal prefilter")
        #expect(rules.prefilteredCount > rules.ruleCount / 2, "the literal prefilter covers too few rules")
    }

    /// The line reader must read exactly what a YAML parser reads.
    @Test(arguments: ["test_ua.yaml", "test_os.yaml"])
    func lineReaderAgreesWithYams(file: String) throws {
        let path = try TestData.require("uap-core/\(file)")
        let fast = try ConformanceFile.load(path)
        let yaml = try #require(try Yams.load(yaml: String(contentsOfFile: path, encoding: .utf8)) as? [String: Any])
        let slow = try #require(yaml["test_cases"] as? [[String: Any]])
        #expect(fast.count == slow.count)
        for (a, b) in zip(fast, slow) {
            #expect(a.userAgent == b["user_agent_string"] as? String)
            for (key, value) in b where key != "user_agent_string" {
                let expected = value as? String
                #expect(a.fields[key] == .some(expected), "\(file) line \(a.line) field \(key)")
            }
        }
    }
}
