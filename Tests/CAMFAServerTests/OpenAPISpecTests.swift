import Foundation
import Testing

@Suite struct OpenAPISpecTests {
    @Test func theDescriptionIsValidOpenAPI31() throws {
        guard let (status, text) = try runPython(["-m", "openapi_spec_validator", "schemas/openapi.yaml"]) else { return }
        #expect(status == 0, "\(text)")
        #expect(text.contains("OK"))
    }

    /// The validator must reject what does not match, or the response checks prove nothing.
    @Test func theResponseValidatorRejectsAMismatch() throws {
        let file = "/tmp/camfa-bad-responses-\(UInt64.random(in: 0...UInt64.max)).jsonl"
        let bad = #"{"method":"GET","path":"/healthz","status":200,"contentType":"application/json","body":"{\"status\":\"up\"}"}"#
        try (bad + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        guard let (status, text) = try runPython(["scripts/validate-responses.py", "schemas/openapi.yaml", file]) else { return }
        #expect(status == 1)
        #expect(text.contains("GET /healthz 200"))
    }
}
