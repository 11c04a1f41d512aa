import CAMFADaemon
import CAMFAServer
import CAMFATokens
import Logging
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import CAMFATestSupport

@Suite struct TLSTests {
    /// nil (skip) when the openssl CLI is missing outside CI.
    static func makeCertificate(in dir: URL) throws -> (cert: String, key: String)? {
        guard which("openssl") != nil else {
            try #require(ProcessInfo.processInfo.environment["CI"] != "true", "the openssl CLI is required under CI")
            print("skipping the TLS test: the openssl CLI is not installed")
            return nil
        }
        let made = try selfSignedCertificate(in: dir)
        try #require(made != nil, "openssl req failed")
        return made
    }

    @Test func anHTTPSRequestIsAnswered() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("camfa-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        guard let (cert, key) = try Self.makeCertificate(in: dir) else { return }
        try await withServer({ $0.tlsCertificate = cert; $0.tlsPrivateKey = key }, scheme: "https") { client in
            // URLSession on Linux cannot be given a private CA, so the request goes through
            // `openssl s_client`, which verifies the chain and the IP against our certificate.
            let r = try client.sendViaOpenSSL("/v1/users/carol/mfa-status", template: "/v1/users/{id}/mfa-status",
                                              key: TestKeys.status, caFile: cert)
            #expect(r.status == 200)
            #expect(r.json["user"] as? String == "carol")
        }
    }

    @Test func anUnreadableCertificateIsAConfigurationError() async throws {
        let tokens = try await TestTokens.make()
        var http = CAMFADaemon.Configuration.HTTP()
        http.tlsCertificate = "/nonexistent/server.crt"
        http.tlsPrivateKey = "/nonexistent/server.key"
        #expect(throws: HTTPServerError.self) {
            _ = try HTTPServerService(configuration: http, backend: TestBackend(), tokens: tokens, logger: .init(label: "t"))
        }
    }
}

extension TestClient {
    /// One HTTPS GET through `openssl s_client` with `Connection: close`; the raw answer is
    /// parsed as HTTP/1.1 with a Content-Length body (what the server sends).
    func sendViaOpenSSL(_ path: String, template: String, key: String, caFile: String) throws -> HTTPReply {
        let port = base.split(separator: ":").last.map(String.init) ?? ""
        let p = Process()
        p.executableURL = URL(fileURLWithPath: which("openssl")!)
        p.arguments = ["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", caFile, "-verify_return_error",
                       "-verify_ip", "127.0.0.1", "-quiet", "-no_ign_eof"]
        let input = Pipe()
        let output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = FileHandle.nullDevice
        try p.run()
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(key)\r\nConnection: close\r\n\r\n"
        input.fileHandleForWriting.write(Data(request.utf8))
        let raw = output.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try input.fileHandleForWriting.close()
        guard let split = raw.range(of: Data("\r\n\r\n".utf8)) else {
            throw TLSTestError(message: "no HTTP response through openssl s_client (exit \(p.terminationStatus))")
        }
        let head = String(decoding: raw[..<split.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let status = Int(head.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let reply = HTTPReply(status: status, headers: headers, body: Data(raw[split.upperBound...]))
        recorder.record(method: "GET", template: template, reply: reply)
        return reply
    }
}

struct TLSTestError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
