import CPCRE2
import Foundation

/// A compiled PCRE2 pattern (UTF mode; JIT-compiled when the platform supports it).
/// The compiled code is read-only after construction and can be shared; each matching
/// thread brings its own `MatchData`.
final class PCRE2Pattern: @unchecked Sendable {
    let code: OpaquePointer
    let captureCount: Int
    let isJIT: Bool
    /// Bytes every match contains (see `RequiredLiteral`), checked before PCRE2 runs.
    let requiredLiteral: [UInt8]?

    init(_ pattern: String, caseInsensitive: Bool) throws(EnrichmentError) {
        var errorCode: Int32 = 0
        var errorOffset: Int = 0
        var options = UInt32(PCRE2_UTF)
        if caseInsensitive { options |= UInt32(PCRE2_CASELESS) }
        let compiled: OpaquePointer? = pattern.withCString { cString in
            cString.withMemoryRebound(to: UInt8.self, capacity: pattern.utf8.count) {
                pcre2_compile_8($0, pattern.utf8.count, options, &errorCode, &errorOffset, nil)
            }
        }
        guard let compiled else {
            var buffer = [UInt8](repeating: 0, count: 256)
            _ = pcre2_get_error_message_8(errorCode, &buffer, buffer.count)
            let reason = String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
            throw EnrichmentError(.invalidRegex, "'\(pattern)': \(reason) at offset \(errorOffset)")
        }
        code = compiled
        // JIT is an optimisation only: where it is unavailable (no JIT support built in,
        // or exec memory denied by the sandbox) the interpreter gives the same answers.
        isJIT = Self.jitAllowed && pcre2_jit_compile_8(compiled, UInt32(PCRE2_JIT_COMPLETE)) == 0
        var count: UInt32 = 0
        _ = pcre2_pattern_info_8(compiled, UInt32(PCRE2_INFO_CAPTURECOUNT), &count)
        captureCount = Int(count)
        requiredLiteral = RequiredLiteral.extract(from: pattern, caseInsensitive: caseInsensitive)
    }

    deinit { pcre2_code_free_8(code) }

    /// `CAMFA_PCRE2_JIT=off`: never JIT. For sandboxes that deny writable+executable
    /// memory (systemd's MemoryDenyWriteExecute=yes), where every JIT attempt would fail.
    static let jitAllowed = getenv("CAMFA_PCRE2_JIT").map { String(cString: $0) != "off" } ?? true
}

/// Match scratch space (ovector, JIT stack) for one thread.
final class MatchData {
    let pointer: OpaquePointer
    let ovector: UnsafeMutablePointer<Int>
    private let context: OpaquePointer?
    private let jitStack: OpaquePointer?
    /// Matches PCRE2 gave up on (resource limits): counted, and treated as no match.
    private(set) var abandonedMatches = 0

    init(maxCaptures: Int) {
        pointer = pcre2_match_data_create_8(UInt32(maxCaptures + 1), nil)
        ovector = pcre2_get_ovector_pointer_8(pointer)
        // The default 32 KiB JIT stack is too small for some rules on long UAs, and
        // running out reads as "no match": the wrong rule would win. 1 MiB is ample for
        // uap-core's bounded patterns.
        context = pcre2_match_context_create_8(nil)
        jitStack = pcre2_jit_stack_create_8(32 * 1024, 1024 * 1024, nil)
        if let context, let jitStack { pcre2_jit_stack_assign_8(context, nil, UnsafeMutableRawPointer(jitStack)) }
    }

    deinit {
        if let jitStack { pcre2_jit_stack_free_8(jitStack) }
        if let context { pcre2_match_context_free_8(context) }
        pcre2_match_data_free_8(pointer)
    }

    /// Unanchored search, as uap-core's rules expect. The subject is valid UTF-8 (it
    /// came from a Swift String), so PCRE2's per-call UTF validation is skipped.
    @inline(__always)
    func search(_ pattern: PCRE2Pattern, in subject: UnsafeBufferPointer<UInt8>) -> Bool {
        if let literal = pattern.requiredLiteral,
           !literal.withUnsafeBufferPointer({ RequiredLiteral.find($0, in: subject) }) {
            return false
        }
        let rc = pcre2_match_8(pattern.code, subject.baseAddress, subject.count, 0, UInt32(PCRE2_NO_UTF_CHECK), pointer, context)
        if rc > 0 { return true }
        if rc != PCRE2_ERROR_NOMATCH { abandonedMatches += 1 }
        return false
    }

    /// Capture group `n` of the last successful match; nil when the group did not take
    /// part in the match or the pattern has fewer groups.
    func group(_ n: Int, of pattern: PCRE2Pattern, in subject: UnsafeBufferPointer<UInt8>) -> Substring? {
        guard n >= 0, n <= pattern.captureCount else { return nil }
        let start = ovector[2 * n]
        let end = ovector[2 * n + 1]
        // PCRE2_UNSET is ~(size_t)0, which reads as -1 through a Swift Int.
        guard start >= 0, end >= 0, start <= end, end <= subject.count else { return nil }
        return Substring(String(decoding: UnsafeBufferPointer(rebasing: subject[start..<end]), as: UTF8.self))
    }
}
