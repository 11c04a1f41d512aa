// Lexer and recursive-descent parser for the CEL grammar (cel-spec langdef.md).
// The parser only builds syntax; names, types and macros are resolved by the checker.

struct Token {
    enum Kind: Equatable {
        case ident, quotedIdent, int, uint, double, string, bytes, punct, eof
    }
    var kind: Kind
    var text: String  // identifier name, punctuation, or the digits of a number
    var literal: Value = .null
    var pos: SourcePosition
}

/// Words CEL reserves: they cannot name variables or functions, but a field or a
/// receiver-style function after `.` may still use them.
let reservedWords: Set<String> = [
    "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let",
    "loop", "package", "namespace", "return", "var", "void", "while",
]

struct Lexer {
    private let scalars: [Unicode.Scalar]
    private var i = 0
    private var line = 1
    private var column = 1

    init(_ source: String) { scalars = Array(source.unicodeScalars) }

    private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
        let j = i + offset
        return j < scalars.count ? scalars[j] : nil
    }

    private mutating func advance() {
        if scalars[i] == "\n" {
            line += 1
            column = 1
        } else {
            column += 1
        }
        i += 1
    }

    private var here: SourcePosition { SourcePosition(line: line, column: column) }

    private func error(_ msg: String, _ pos: SourcePosition) -> ExpressionError {
        ExpressionError(code: .syntax, message: msg, position: pos)
    }

    mutating func tokenize() throws(ExpressionError) -> [Token] {
        var out: [Token] = []
        while true {
            skipTrivia()
            guard let c = peek() else {
                out.append(Token(kind: .eof, text: "", pos: here))
                return out
            }
            let start = here
            if isIdentStart(c) {
                // String and bytes prefixes: r, b, br, rb in either case.
                if let tok = try lexPrefixedString(start) {
                    out.append(tok)
                    continue
                }
                var name = ""
                while let d = peek(), isIdentStart(d) || isDigit(d) {
                    name.unicodeScalars.append(d)
                    advance()
                }
                out.append(Token(kind: .ident, text: name, pos: start))
            } else if isDigit(c) || (c == "." && peek(1).map(isDigit) == true) {
                out.append(try lexNumber(start))
            } else if c == "\"" || c == "'" {
                let s = try lexQuoted(raw: false, bytes: false, start)
                out.append(Token(kind: .string, text: "", literal: s, pos: start))
            } else if c == "`" {
                advance()
                var name = ""
                while let d = peek(), d != "`" {
                    if d == "\n" { throw error("unterminated quoted identifier", start) }
                    name.unicodeScalars.append(d)
                    advance()
                }
                guard peek() == "`" else { throw error("unterminated quoted identifier", start) }
                advance()
                out.append(Token(kind: .quotedIdent, text: name, pos: start))
            } else {
                let two = peek(1).map { String(c) + String($0) } ?? ""
                if ["==", "!=", "<=", ">=", "&&", "||"].contains(two) {
                    advance(); advance()
                    out.append(Token(kind: .punct, text: two, pos: start))
                } else if "+-*/%<>!?:.,()[]{}".unicodeScalars.contains(c) {
                    advance()
                    out.append(Token(kind: .punct, text: String(c), pos: start))
                } else if c == "=" || c == "&" || c == "|" {
                    throw error("unexpected character '\(c)' (did you mean '\(c)\(c)'?)", start)
                } else {
                    throw error("unexpected character '\(c)'", start)
                }
            }
        }
    }

    private mutating func skipTrivia() {
        while let c = peek() {
            if c == " " || c == "\t" || c == "\n" || c == "\r" || c == "\u{0C}" {
                advance()
            } else if c == "/" && peek(1) == "/" {
                while let d = peek(), d != "\n" { advance() }
            } else {
                return
            }
        }
    }

    private func isIdentStart(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_"
    }
    private func isDigit(_ c: Unicode.Scalar) -> Bool { c >= "0" && c <= "9" }
    private func isHex(_ c: Unicode.Scalar) -> Bool {
        isDigit(c) || (c >= "a" && c <= "f") || (c >= "A" && c <= "F")
    }

    private mutating func lexPrefixedString(_ start: SourcePosition) throws(ExpressionError) -> Token? {
        var raw = false, bytes = false, n = 0
        while n < 2, let c = peek(n) {
            if (c == "r" || c == "R") && !raw { raw = true } else if (c == "b" || c == "B") && !bytes { bytes = true } else { break }
            n += 1
        }
        guard n > 0, let q = peek(n), q == "\"" || q == "'" else { return nil }
        for _ in 0..<n { advance() }
        let v = try lexQuoted(raw: raw, bytes: bytes, start)
        return Token(kind: bytes ? .bytes : .string, text: "", literal: v, pos: start)
    }

    private mutating func lexNumber(_ start: SourcePosition) throws(ExpressionError) -> Token {
        var text = ""
        if peek() == "0", let x = peek(1), x == "x" || x == "X" {
            advance(); advance()
            while let d = peek(), isHex(d) { text.unicodeScalars.append(d); advance() }
            if text.isEmpty { throw error("malformed hexadecimal literal", start) }
            if let u = peek(), u == "u" || u == "U" {
                advance()
                guard let v = UInt64(text, radix: 16) else { throw error("uint literal out of range", start) }
                return Token(kind: .uint, text: text, literal: .uint(v), pos: start)
            }
            // Kept as text so that a leading minus can reach Int64.min.
            return Token(kind: .int, text: "0x" + text, pos: start)
        }
        var isDouble = false
        while let d = peek(), isDigit(d) { text.unicodeScalars.append(d); advance() }
        if peek() == ".", let d = peek(1), isDigit(d) {
            isDouble = true
            text.append(".")
            advance()
            while let d = peek(), isDigit(d) { text.unicodeScalars.append(d); advance() }
        }
        if let e = peek(), e == "e" || e == "E" {
            var k = 1
            if let s = peek(1), s == "+" || s == "-" { k = 2 }
            if let d = peek(k), isDigit(d) {
                isDouble = true
                for _ in 0..<k { text.unicodeScalars.append(peek()!); advance() }
                while let d = peek(), isDigit(d) { text.unicodeScalars.append(d); advance() }
            }
        }
        if isDouble {
            guard let v = Double(text) else { throw error("malformed double literal", start) }
            return Token(kind: .double, text: text, literal: .double(v), pos: start)
        }
        if let u = peek(), u == "u" || u == "U" {
            advance()
            guard let v = UInt64(text) else { throw error("uint literal out of range", start) }
            return Token(kind: .uint, text: text, literal: .uint(v), pos: start)
        }
        return Token(kind: .int, text: text, pos: start)
    }

    private mutating func lexQuoted(raw: Bool, bytes: Bool, _ start: SourcePosition) throws(ExpressionError) -> Value {
        let q = peek()!
        let triple = peek(1) == q && peek(2) == q
        advance()
        if triple { advance(); advance() }
        var out: [UInt8] = []
        func appendScalar(_ s: Unicode.Scalar) { out.append(contentsOf: String(s).utf8) }
        while true {
            guard let c = peek() else { throw error("unterminated string literal", start) }
            if c == q {
                if !triple { advance(); break }
                if peek(1) == q && peek(2) == q { advance(); advance(); advance(); break }
            }
            if !triple && (c == "\n" || c == "\r") { throw error("newline in single-quoted string literal", here) }
            if c == "\\" && !raw {
                let escPos = here
                advance()
                guard let e = peek() else { throw error("unterminated string literal", start) }
                advance()
                switch e {
                case "a": out.append(7)
                case "b": out.append(8)
                case "f": out.append(12)
                case "n": out.append(10)
                case "r": out.append(13)
                case "t": out.append(9)
                case "v": out.append(11)
                case "\\", "'", "\"", "`", "?": appendScalar(e)
                case "x", "X", "u", "U":
                    let n = (e == "u") ? 4 : (e == "U") ? 8 : 2
                    var v: UInt32 = 0
                    for _ in 0..<n {
                        guard let h = peek(), isHex(h) else { throw error("malformed escape sequence", escPos) }
                        v = v * 16 + UInt32(String(h), radix: 16)!
                        advance()
                    }
                    if bytes && n == 2 {
                        out.append(UInt8(v))
                    } else if bytes && n > 2 {
                        throw error("unicode escapes are not allowed in bytes literals", escPos)
                    } else {
                        guard let s = Unicode.Scalar(v) else { throw error("invalid unicode code point in escape", escPos) }
                        appendScalar(s)
                    }
                case "0"..."3":
                    var v = UInt32(e.value - 48)
                    for _ in 0..<2 {
                        guard let d = peek(), d >= "0" && d <= "7" else { throw error("malformed octal escape", escPos) }
                        v = v * 8 + (d.value - 48)
                        advance()
                    }
                    if bytes { out.append(UInt8(v)) } else { appendScalar(Unicode.Scalar(v)!) }
                default:
                    throw error("invalid escape sequence '\\\(e)'", escPos)
                }
                continue
            }
            appendScalar(c)
            advance()
        }
        if bytes { return .bytes(out) }
        return .string(String(decoding: out, as: UTF8.self))
    }
}

// MARK: - Syntax tree

final class Node {
    indirect enum Kind {
        case literal(Value)
        case ident(String)
        /// `operand.field`, or a field test when it is the argument of `has()`.
        case select(Node, String)
        /// A global call (`f(x)`, operators as `_+_`) or a receiver call (`x.f(y)`).
        case call(target: Node?, function: String, args: [Node])
        case list([Node])
        case map([(Node, Node)])
    }
    let kind: Kind
    let pos: SourcePosition
    init(_ kind: Kind, _ pos: SourcePosition) {
        self.kind = kind
        self.pos = pos
    }
}

struct Parser {
    private var tokens: [Token]
    private var p = 0
    private var depth = 0
    /// Deep nesting would overflow the stack of the recursive descent.
    private static let maxDepth = 250

    init(_ source: String) throws(ExpressionError) {
        var lexer = Lexer(source)
        tokens = try lexer.tokenize()
    }

    static func parse(_ source: String) throws(ExpressionError) -> Node {
        var parser = try Parser(source)
        let e = try parser.expr()
        let t = parser.tokens[parser.p]
        if t.kind != .eof { throw parser.unexpected(t) }
        return e
    }

    private var cur: Token { tokens[p] }
    private func isPunct(_ s: String) -> Bool { cur.kind == .punct && cur.text == s }

    private func unexpected(_ t: Token) -> ExpressionError {
        let what = t.kind == .eof ? "end of expression" : "'\(t.text.isEmpty ? "literal" : t.text)'"
        return ExpressionError(code: .syntax, message: "unexpected \(what)", position: t.pos)
    }

    private mutating func expect(_ s: String) throws(ExpressionError) -> Token {
        guard isPunct(s) else {
            let e = unexpected(cur)
            throw ExpressionError(code: .syntax, message: "\(e.message), expected '\(s)'", position: e.position)
        }
        defer { p += 1 }
        return cur
    }

    private mutating func nest() throws(ExpressionError) {
        depth += 1
        if depth > Parser.maxDepth {
            throw ExpressionError(code: .syntax, message: "expression nested too deeply", position: cur.pos)
        }
    }

    mutating func expr() throws(ExpressionError) -> Node {
        try nest()
        defer { depth -= 1 }
        let c = try orExpr()
        if isPunct("?") {
            let q = cur
            p += 1
            let a = try orExpr()
            _ = try expect(":")
            let b = try expr()
            return Node(.call(target: nil, function: "_?_:_", args: [c, a, b]), q.pos)
        }
        return c
    }

    private mutating func orExpr() throws(ExpressionError) -> Node {
        var l = try andExpr()
        while isPunct("||") {
            let t = cur
            p += 1
            let r = try andExpr()
            l = Node(.call(target: nil, function: "_||_", args: [l, r]), t.pos)
        }
        return l
    }

    private mutating func andExpr() throws(ExpressionError) -> Node {
        var l = try relation()
        while isPunct("&&") {
            let t = cur
            p += 1
            let r = try relation()
            l = Node(.call(target: nil, function: "_&&_", args: [l, r]), t.pos)
        }
        return l
    }

    private mutating func relation() throws(ExpressionError) -> Node {
        var l = try addition()
        while true {
            let t = cur
            let op: String
            if t.kind == .punct, ["<", "<=", ">", ">=", "==", "!="].contains(t.text) {
                op = "_\(t.text)_"
            } else if t.kind == .ident && t.text == "in" {
                op = "@in"
            } else {
                return l
            }
            p += 1
            let r = try addition()
            l = Node(.call(target: nil, function: op, args: [l, r]), t.pos)
        }
    }

    private mutating func addition() throws(ExpressionError) -> Node {
        var l = try multiplication()
        while cur.kind == .punct && (cur.text == "+" || cur.text == "-") {
            let t = cur
            p += 1
            let r = try multiplication()
            l = Node(.call(target: nil, function: "_\(t.text)_", args: [l, r]), t.pos)
        }
        return l
    }

    private mutating func multiplication() throws(ExpressionError) -> Node {
        var l = try unary()
        while cur.kind == .punct && (cur.text == "*" || cur.text == "/" || cur.text == "%") {
            let t = cur
            p += 1
            let r = try unary()
            l = Node(.call(target: nil, function: "_\(t.text)_", args: [l, r]), t.pos)
        }
        return l
    }

    private mutating func unary() throws(ExpressionError) -> Node {
        try nest()
        defer { depth -= 1 }
        if isPunct("!") {
            let t = cur
            p += 1
            let operand = try unary()
            return Node(.call(target: nil, function: "!_", args: [operand]), t.pos)
        }
        if isPunct("-") {
            let t = cur
            p += 1
            // A minus directly before a number literal is part of the literal, so that
            // -9223372036854775808 is representable.
            if cur.kind == .int || cur.kind == .double {
                let lit = cur
                p += 1
                let value: Value
                if lit.kind == .double, case .double(let d) = lit.literal {
                    value = .double(-d)
                } else {
                    value = .int(try parseInt("-" + lit.text, lit.pos))
                }
                return try member(Node(.literal(value), t.pos))
            }
            let operand = try unary()
            return Node(.call(target: nil, function: "-_", args: [operand]), t.pos)
        }
        return try member(try primary())
    }

    private func parseInt(_ text: String, _ pos: SourcePosition) throws(ExpressionError) -> Int64 {
        var s = Substring(text)
        let neg = s.hasPrefix("-")
        if neg { s = s.dropFirst() }
        let v: Int64?
        if s.hasPrefix("0x") {
            v = UInt64(s.dropFirst(2), radix: 16).flatMap { u -> Int64? in
                if neg { return u == UInt64(Int64.max) + 1 ? Int64.min : Int64(exactly: u).map { -$0 } }
                return Int64(exactly: u)
            }
        } else {
            v = Int64((neg ? "-" : "") + s)
        }
        guard let v else {
            throw ExpressionError(code: .syntax, message: "int literal \(text) out of range", position: pos)
        }
        return v
    }

    private mutating func member(_ operand: Node) throws(ExpressionError) -> Node {
        var e = operand
        while true {
            if isPunct(".") {
                p += 1
                let name = cur
                guard name.kind == .ident || name.kind == .quotedIdent else { throw unexpected(name) }
                p += 1
                if name.kind == .ident && isPunct("(") {
                    p += 1
                    let args = try exprList(close: ")")
                    e = Node(.call(target: e, function: name.text, args: args), name.pos)
                } else {
                    e = Node(.select(e, name.text), name.pos)
                }
            } else if isPunct("[") {
                let t = cur
                p += 1
                let i = try expr()
                _ = try expect("]")
                e = Node(.call(target: nil, function: "_[_]", args: [e, i]), t.pos)
            } else if isPunct("{") {
                throw ExpressionError(code: .syntax, message: "message construction is not supported", position: cur.pos)
            } else {
                return e
            }
        }
    }

    private mutating func exprList(close: String) throws(ExpressionError) -> [Node] {
        var items: [Node] = []
        if isPunct(close) { p += 1; return items }
        while true {
            items.append(try expr())
            if isPunct(",") {
                p += 1
                if isPunct(close) { p += 1; return items }  // trailing comma
                continue
            }
            _ = try expect(close)
            return items
        }
    }

    private mutating func primary() throws(ExpressionError) -> Node {
        let t = cur
        switch t.kind {
        case .int:
            p += 1
            return Node(.literal(.int(try parseInt(t.text, t.pos))), t.pos)
        case .uint, .double, .string, .bytes:
            p += 1
            return Node(.literal(t.literal), t.pos)
        case .ident:
            p += 1
            switch t.text {
            case "true": return Node(.literal(.bool(true)), t.pos)
            case "false": return Node(.literal(.bool(false)), t.pos)
            case "null": return Node(.literal(.null), t.pos)
            case "in": throw unexpected(t)
            default: break
            }
            if reservedWords.contains(t.text) {
                throw ExpressionError(code: .syntax, message: "reserved identifier '\(t.text)'", position: t.pos)
            }
            if isPunct("(") {
                p += 1
                let args = try exprList(close: ")")
                return Node(.call(target: nil, function: t.text, args: args), t.pos)
            }
            return Node(.ident(t.text), t.pos)
        case .punct:
            switch t.text {
            case ".":
                // A leading dot names the root scope; without containers it changes nothing.
                p += 1
                guard cur.kind == .ident else { throw unexpected(cur) }
                return try primary()
            case "(":
                p += 1
                let e = try expr()
                _ = try expect(")")
                return e
            case "[":
                p += 1
                return Node(.list(try exprList(close: "]")), t.pos)
            case "{":
                p += 1
                var entries: [(Node, Node)] = []
                if isPunct("}") { p += 1; return Node(.map(entries), t.pos) }
                while true {
                    let k = try expr()
                    _ = try expect(":")
                    let v = try expr()
                    entries.append((k, v))
                    if isPunct(",") {
                        p += 1
                        if isPunct("}") { p += 1; break }
                        continue
                    }
                    _ = try expect("}")
                    break
                }
                return Node(.map(entries), t.pos)
            default:
                throw unexpected(t)
            }
        case .quotedIdent, .eof:
            throw unexpected(t)
        }
    }
}
