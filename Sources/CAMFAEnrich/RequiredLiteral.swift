#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The longest run of plain characters every match of a pattern must contain, used to
/// skip the regex engine for rules that cannot match: most of uap-core's 1,270 rules
/// name a product ("Teams/", "Pinterest/") and most UAs contain none of them, but
/// PCRE2's own start-of-match optimisations only look at single code units.
///
/// Deliberately conservative: only the top level of the pattern is read (groups and
/// classes end a run), a top-level alternation, an inline option or \Q...\E gives no
/// literal, and so does a case-insensitive rule. No literal means "always run the
/// regex", so a pattern this reader does not understand costs speed, never a match.
enum RequiredLiteral {
    static func extract(from pattern: String, caseInsensitive: Bool) -> [UInt8]? {
        if caseInsensitive { return nil }
        let p = Array(pattern.utf8)
        if contains(p, "(?i") || contains(p, "\\Q") || contains(p, "(?x") || contains(p, "(?s") || contains(p, "(?m") {
            return nil
        }
        var runs: [[UInt8]] = []
        var run: [UInt8] = []
        // Index in `run` of the last single-character atom, so a following quantifier
        // can take it back.
        var lastAtomWasChar = false
        // Closing-paren positions of the groups being read through.
        var inlinedGroups: [Int] = []
        func endRun() {
            if !run.isEmpty { runs.append(run) }
            run = []
            lastAtomWasChar = false
        }
        var i = 0
        while i < p.count {
            let c = p[i]
            switch c {
            case UInt8(ascii: "|"):
                return nil  // top-level alternation: no single required literal
            case UInt8(ascii: "("):
                // A plain or non-capturing group without alternation that must occur
                // at least once reads through: "(Teams)/" requires "Teams/". Anything
                // else (lookarounds, named groups, optional groups) is skipped whole.
                guard let close = closingParen(p, from: i) else { return nil }
                let isPlain = i + 1 < p.count && p[i + 1] != UInt8(ascii: "?")
                let isNonCapturing = i + 2 < p.count && p[i + 1] == UInt8(ascii: "?") && p[i + 2] == UInt8(ascii: ":")
                let minimum = minimumRepeat(p, after: close)
                if (isPlain || isNonCapturing) && !hasTopLevelAlternation(p, from: i + 1, to: close) && minimum >= 1 {
                    inlinedGroups.append(close)
                    i += isPlain ? 1 : 3
                    continue
                }
                guard let end = skipGroup(p, from: i) else { return nil }
                endRun()
                i = end
                continue
            case UInt8(ascii: "["):
                guard let end = skipClass(p, from: i) else { return nil }
                endRun()
                i = end
                continue
            case UInt8(ascii: "?"), UInt8(ascii: "*"):
                if lastAtomWasChar { run.removeLast() }
                endRun()
            case UInt8(ascii: "+"):
                endRun()
            case UInt8(ascii: "{"):
                if let (minimum, end) = quantifier(p, from: i) {
                    if minimum == 0 && lastAtomWasChar { run.removeLast() }
                    endRun()
                    i = end
                    continue
                }
                endRun()  // a literal "{": PCRE2 accepts it, but stay simple
            case UInt8(ascii: ")"):
                guard inlinedGroups.last == i else { return nil }
                inlinedGroups.removeLast()
                lastAtomWasChar = false
                let end = skipQuantifier(p, from: i + 1)
                if end != i + 1 { endRun() }  // repeated: what follows is not contiguous
                i = end
                continue
            case UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "$"):
                endRun()
            case UInt8(ascii: "\\"):
                guard i + 1 < p.count else { return nil }
                let e = p[i + 1]
                let isAlnum = (e >= 0x30 && e <= 0x39) || (e >= 0x41 && e <= 0x5A) || (e >= 0x61 && e <= 0x7A)
                if isAlnum || e >= 0x80 {
                    endRun()  // \d, \b, \1, \x41, ...: not a plain character
                } else {
                    run.append(e)
                    lastAtomWasChar = true
                }
                i += 2
                continue
            default:
                if c >= 0x80 {
                    // A multi-byte character: keep it whole, and let a quantifier after
                    // it end the run without surgery.
                    var end = i + 1
                    while end < p.count && p[end] & 0xC0 == 0x80 { end += 1 }
                    if end < p.count, [UInt8(ascii: "?"), UInt8(ascii: "*"), UInt8(ascii: "{"), UInt8(ascii: "+")].contains(p[end]) {
                        endRun()
                    } else {
                        run.append(contentsOf: p[i..<end])
                    }
                    lastAtomWasChar = false
                    i = end
                    continue
                }
                run.append(c)
                lastAtomWasChar = true
                i += 1
                continue
            }
            i += 1
            // A lazy or possessive suffix after a quantifier.
            if i < p.count, p[i] == UInt8(ascii: "?") || p[i] == UInt8(ascii: "+"),
               c == UInt8(ascii: "?") || c == UInt8(ascii: "*") || c == UInt8(ascii: "+") {
                i += 1
            }
        }
        endRun()
        guard let best = runs.max(by: { $0.count < $1.count }), best.count >= 3 else { return nil }
        return best
    }

    /// Index of the ")" closing the group opened at `start`.
    private static func closingParen(_ p: [UInt8], from start: Int) -> Int? {
        guard let end = skipGroup(p, from: start) else { return nil }
        var close = end - 1
        while close > start && p[close] != UInt8(ascii: ")") { close -= 1 }
        return close
    }

    /// Whether p[start..<end] has a "|" outside nested groups and classes.
    private static func hasTopLevelAlternation(_ p: [UInt8], from start: Int, to end: Int) -> Bool {
        var i = start
        while i < end {
            switch p[i] {
            case UInt8(ascii: "\\"): i += 2; continue
            case UInt8(ascii: "|"): return true
            case UInt8(ascii: "("):
                guard let close = closingParen(p, from: i) else { return true }
                i = close + 1
                continue
            case UInt8(ascii: "["):
                guard let after = skipClass(p, from: i) else { return true }
                i = after
                continue
            default: i += 1
            }
        }
        return false
    }

    /// The least number of times the atom ending just before `index` must occur.
    private static func minimumRepeat(_ p: [UInt8], after close: Int) -> Int {
        let i = close + 1
        guard i < p.count else { return 1 }
        switch p[i] {
        case UInt8(ascii: "?"), UInt8(ascii: "*"): return 0
        case UInt8(ascii: "{"): return quantifier(p, from: i)?.0 ?? 1
        default: return 1
        }
    }

    /// Index after the ")" closing the group opened at `start`; nil if unbalanced.
    private static func skipGroup(_ p: [UInt8], from start: Int) -> Int? {
        var depth = 0
        var i = start
        while i < p.count {
            switch p[i] {
            case UInt8(ascii: "\\"): i += 2; continue
            case UInt8(ascii: "["):
                guard let end = skipClass(p, from: i) else { return nil }
                i = end
                continue
            case UInt8(ascii: "("): depth += 1
            case UInt8(ascii: ")"):
                depth -= 1
                if depth == 0 { return skipQuantifier(p, from: i + 1) }
            default: break
            }
            i += 1
        }
        return nil
    }

    /// Index after the "]" closing the class opened at `start`.
    private static func skipClass(_ p: [UInt8], from start: Int) -> Int? {
        var i = start + 1
        if i < p.count && p[i] == UInt8(ascii: "^") { i += 1 }
        if i < p.count && p[i] == UInt8(ascii: "]") { i += 1 }  // "]" first is literal
        while i < p.count {
            if p[i] == UInt8(ascii: "\\") { i += 2; continue }
            if p[i] == UInt8(ascii: "[") && i + 1 < p.count && p[i + 1] == UInt8(ascii: ":") {
                // POSIX class [:alpha:]
                var j = i + 2
                while j + 1 < p.count && !(p[j] == UInt8(ascii: ":") && p[j + 1] == UInt8(ascii: "]")) { j += 1 }
                i = j + 2
                continue
            }
            if p[i] == UInt8(ascii: "]") { return skipQuantifier(p, from: i + 1) }
            i += 1
        }
        return nil
    }

    /// A group or class is one atom: its quantifier goes with it.
    private static func skipQuantifier(_ p: [UInt8], from start: Int) -> Int {
        var i = start
        guard i < p.count else { return i }
        if p[i] == UInt8(ascii: "?") || p[i] == UInt8(ascii: "*") || p[i] == UInt8(ascii: "+") {
            i += 1
        } else if p[i] == UInt8(ascii: "{"), let (_, end) = quantifier(p, from: i) {
            i = end
        } else {
            return i
        }
        if i < p.count && (p[i] == UInt8(ascii: "?") || p[i] == UInt8(ascii: "+")) { i += 1 }
        return i
    }

    /// "{n}", "{n,}", "{n,m}" at `start`: the minimum and the index after it (and after
    /// a lazy/possessive suffix).
    private static func quantifier(_ p: [UInt8], from start: Int) -> (Int, Int)? {
        var i = start + 1
        var minimum = 0
        var digits = 0
        while i < p.count, p[i] >= 0x30, p[i] <= 0x39 {
            minimum = minimum * 10 + Int(p[i] - 0x30)
            digits += 1
            i += 1
        }
        guard digits > 0, i < p.count else { return nil }
        if p[i] == UInt8(ascii: ",") {
            i += 1
            while i < p.count, p[i] >= 0x30, p[i] <= 0x39 { i += 1 }
        }
        guard i < p.count, p[i] == UInt8(ascii: "}") else { return nil }
        i += 1
        if i < p.count && (p[i] == UInt8(ascii: "?") || p[i] == UInt8(ascii: "+")) { i += 1 }
        return (minimum, i)
    }

    private static func contains(_ haystack: [UInt8], _ needle: StaticString) -> Bool {
        haystack.withUnsafeBufferPointer { find(UnsafeBufferPointer(start: needle.utf8Start, count: needle.utf8CodeUnitCount), in: $0) }
    }

    /// memchr for the first byte, then a compare: fast on UA-sized subjects.
    static func find(_ needle: UnsafeBufferPointer<UInt8>, in haystack: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = needle.count
        guard n > 0 else { return true }
        guard let base = haystack.baseAddress, haystack.count >= n, let first = needle.baseAddress else { return false }
        var offset = 0
        let last = haystack.count - n
        while offset <= last {
            guard let hit = memchr(base + offset, Int32(first.pointee), last - offset + 1) else { return false }
            let position = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            if memcmp(base + position, first, n) == 0 { return true }
            offset = position + 1
        }
        return false
    }
}
