import CLibSSL
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One message to one recipient over SMTP submission (RFC 6409): EHLO, STARTTLS
/// (RFC 3207) with the server's certificate checked against its name, AUTH PLAIN
/// (RFC 4616), MAIL, RCPT, DATA. Blocking, on the caller's thread: codes are sent one
/// at a time, off the poll loop (`CodeSender` runs it on a queue of its own).
public struct SMTPClient: Sendable {
    public struct Settings: Sendable, Equatable {
        public var host: String
        public var port: Int
        public var starttls: Bool
        public var username: String?
        public var password: String?
        public var caFile: String?
        /// Seconds for each read or write.
        public var timeout: Double

        public init(host: String, port: Int, starttls: Bool = true, username: String? = nil, password: String? = nil,
                    caFile: String? = nil, timeout: Double = 10) {
            self.host = host
            self.port = port
            self.starttls = starttls
            self.username = username
            self.password = password
            self.caFile = caFile
            self.timeout = timeout
        }
    }

    public var settings: Settings

    public init(_ settings: Settings) { self.settings = settings }

    /// Sends `message` (headers and body, lines ending in CRLF or LF) from `from` to `to`
    /// (bare addresses).
    public func send(from: String, to: String, message: String) throws(DeliveryError) {
        let connection = try Connection(host: settings.host, port: settings.port, timeout: settings.timeout)
        defer { connection.close() }
        try connection.expect(220, "the greeting")
        var extensions = try connection.command("EHLO camfa", expect: 250)
        if settings.starttls {
            guard extensions.contains(where: { $0.uppercased().hasPrefix("STARTTLS") }) else {
                throw DeliveryError(code: .refused, message: "\(settings.host):\(settings.port) does not offer STARTTLS")
            }
            _ = try connection.command("STARTTLS", expect: 220)
            try connection.startTLS(serverName: settings.host, caFile: settings.caFile)
            extensions = try connection.command("EHLO camfa", expect: 250)
        }
        if let user = settings.username, let password = settings.password {
            guard extensions.contains(where: { $0.uppercased().hasPrefix("AUTH") && $0.uppercased().contains("PLAIN") }) else {
                throw DeliveryError(code: .refused, message: "\(settings.host):\(settings.port) does not offer AUTH PLAIN")
            }
            let token = Data([0] + Array(user.utf8) + [0] + Array(password.utf8)).base64EncodedString()
            _ = try connection.command("AUTH PLAIN \(token)", expect: 235, shown: "AUTH PLAIN (credentials)")
        }
        _ = try connection.command("MAIL FROM:<\(from)>", expect: 250)
        _ = try connection.command("RCPT TO:<\(to)>", expect: 250, or: 251)
        _ = try connection.command("DATA", expect: 354)
        // Dot-stuffing (RFC 5321 4.5.2), CRLF line ends.
        let lines = message.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
        let body = lines.map { $0.hasPrefix(".") ? "." + $0 : String($0) }.joined(separator: "\r\n")
        _ = try connection.command(body + "\r\n.", expect: 250, shown: "the message")
        _ = try? connection.command("QUIT", expect: 221)
    }

    /// A socket, then TLS over it once STARTTLS was accepted.
    final class Connection {
        let host: String
        let port: Int
        private var fd: Int32 = -1
        private var ctx: OpaquePointer?
        private var ssl: OpaquePointer?
        private var buffer: [UInt8] = []

        init(host: String, port: Int, timeout: Double) throws(DeliveryError) {
            self.host = host
            self.port = port
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else {
                throw DeliveryError(code: .unreachable, message: "cannot resolve \(host)")
            }
            defer { freeaddrinfo(list) }
            var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
            var last = "no address"
            var ai: UnsafeMutablePointer<addrinfo>? = first
            while let a = ai {
                let s = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
                if s >= 0 {
                    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                    if connect(s, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 { fd = s; return }
                    last = String(cString: strerror(errno))
                    Glibc.close(s)
                }
                ai = a.pointee.ai_next
            }
            throw DeliveryError(code: .unreachable, message: "cannot connect to \(host):\(port): \(last)")
        }

        func close() {
            if let ssl { SSL_shutdown(ssl); SSL_free(ssl) }
            if let ctx { SSL_CTX_free(ctx) }
            ssl = nil
            ctx = nil
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }

        func startTLS(serverName: String, caFile: String?) throws(DeliveryError) {
            guard buffer.isEmpty else { throw DeliveryError(code: .protocolError, message: "\(host) sent data before the TLS handshake") }
            guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw DeliveryError(code: .tls, message: "cannot create a TLS context") }
            self.ctx = ctx
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
            _ = SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
            let loaded = caFile.map { SSL_CTX_load_verify_locations(ctx, $0, nil) } ?? SSL_CTX_set_default_verify_paths(ctx)
            guard loaded == 1 else { throw DeliveryError(code: .tls, message: "cannot load the CA certificates \(caFile ?? "of the system")") }
            guard let ssl = SSL_new(ctx) else { throw DeliveryError(code: .tls, message: "cannot create a TLS session") }
            self.ssl = ssl
            SSL_set_fd(ssl, fd)
            // The certificate must name the server: its IP address, or its host name (also sent as SNI).
            var v4 = in_addr(), v6 = in6_addr()
            if inet_pton(AF_INET, serverName, &v4) == 1 || inet_pton(AF_INET6, serverName, &v6) == 1 {
                X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName)
            } else {
                SSL_set1_host(ssl, serverName)
                _ = serverName.withCString { SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: $0)) }
            }
            guard SSL_connect(ssl) == 1 else {
                let verify = SSL_get_verify_result(ssl)
                let reason = verify != X509_V_OK ? String(cString: X509_verify_cert_error_string(verify)) : Self.lastError()
                throw DeliveryError(code: .tls, message: "TLS with \(host):\(port) failed: \(reason)")
            }
        }

        static func lastError() -> String {
            var buf = [CChar](repeating: 0, count: 256)
            let e = ERR_get_error()
            guard e != 0 else { return "the connection closed" }
            ERR_error_string_n(e, &buf, buf.count)
            return String(cString: buf)
        }

        private func write(_ text: String) throws(DeliveryError) {
            var bytes = Array(text.utf8)[...]
            while !bytes.isEmpty {
                let n = bytes.withUnsafeBytes { p -> Int in
                    if let ssl { return Int(SSL_write(ssl, p.baseAddress, Int32(p.count))) }
                    return Glibc.send(fd, p.baseAddress, p.count, Int32(MSG_NOSIGNAL))
                }
                guard n > 0 else { throw DeliveryError(code: .unreachable, message: "cannot write to \(host):\(port) (closed or timed out)") }
                bytes = bytes.dropFirst(n)
            }
        }

        private func readLine() throws(DeliveryError) -> String {
            while true {
                if let i = buffer.firstIndex(of: 0x0A) {
                    var line = Array(buffer[..<i])
                    buffer.removeFirst(i + 1)
                    if line.last == 0x0D { line.removeLast() }
                    return String(decoding: line, as: UTF8.self)
                }
                guard buffer.count < 64 * 1024 else { throw DeliveryError(code: .protocolError, message: "\(host) sent a line over 64 KiB") }
                var chunk = [UInt8](repeating: 0, count: 4096)
                let n = chunk.withUnsafeMutableBytes { p -> Int in
                    if let ssl { return Int(SSL_read(ssl, p.baseAddress, Int32(p.count))) }
                    return recv(fd, p.baseAddress, p.count, 0)
                }
                guard n > 0 else { throw DeliveryError(code: .unreachable, message: "\(host):\(port) closed the connection or did not answer in time") }
                buffer.append(contentsOf: chunk[..<n])
            }
        }

        /// A reply (RFC 5321 4.2): its code and the text of each line.
        private func reply() throws(DeliveryError) -> (code: Int, lines: [String]) {
            var lines: [String] = []
            while true {
                let line = try readLine()
                let digits = line.prefix(3)
                guard digits.count == 3, let code = Int(digits) else {
                    throw DeliveryError(code: .protocolError, message: "\(host) answered something that is not an SMTP reply")
                }
                lines.append(String(line.dropFirst(4)))
                if line.dropFirst(3).first != "-" { return (code, lines) }
            }
        }

        func expect(_ code: Int, _ what: String) throws(DeliveryError) {
            let r = try reply()
            guard r.code == code else {
                throw DeliveryError(code: .refused, message: "\(host) answered \(r.code) to \(what): \(r.lines.last ?? "")", status: r.code)
            }
        }

        /// Sends `line` and reads the reply; `shown` names it in errors instead of its text.
        func command(_ line: String, expect code: Int, or other: Int? = nil, shown: String? = nil) throws(DeliveryError) -> [String] {
            try write(line + "\r\n")
            let r = try reply()
            guard r.code == code || r.code == other else {
                let what = shown ?? String(line.prefix(while: { $0 != ":" && $0 != " " }))
                throw DeliveryError(code: .refused, message: "\(host) answered \(r.code) to \(what): \(r.lines.last ?? "")", status: r.code)
            }
            return r.lines
        }
    }
}

/// Why a code could not be handed to its provider (SMTP server or webhook).
public struct DeliveryError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// No connection, or it broke or timed out.
        case unreachable
        /// TLS could not be set up or the certificate did not verify.
        case tls
        /// The provider answered, and not with success.
        case refused
        /// The provider said something camfa could not read.
        case protocolError = "protocol-error"
        /// Delivery is not configured for the method.
        case notConfigured = "not-configured"
    }

    public var code: Code
    public var message: String
    /// The provider's status (SMTP reply code, HTTP status) when it answered.
    public var status: Int?

    public init(code: Code, message: String, status: Int? = nil) {
        self.code = code
        self.message = message
        self.status = status
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
