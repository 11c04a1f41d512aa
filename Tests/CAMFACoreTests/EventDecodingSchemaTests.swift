import Foundation
import Testing

@testable import CAMFACore
import CAMFATestSupport

/// schemas/ueba-event.schema.json is what producers validate against; the decoder is
/// what the daemon enforces. This suite keeps them from drifting apart by running the
/// same samples through both (the schema side with Python's jsonschema).
enum SchemaCheck {
    static let schemaPath = packageRoot.appendingPathComponent("schemas/ueba-event.schema.json").path

    static func run(_ arguments: [String], stdin: Data? = nil) -> (status: Int32, out: String, err: String)? {
        guard let r = try? runTool(arguments[0], Array(arguments.dropFirst()), stdin: stdin) else { return nil }
        return (r.status, r.stdout, r.stderr)
    }

    static let available: Bool = run(["python3", "-c", "import jsonschema"])?.status == 0
    static let required = isCI

    /// Validates each sample (one JSON document per line) and returns true/false per line.
    static let validator = """
        import json, sys, jsonschema
        schema = json.load(open(sys.argv[1]))
        v = jsonschema.Draft202012Validator(schema)
        for line in sys.stdin.read().split("\\n"):
            if line:
                print("1" if v.is_valid(json.loads(line)) else "0")
        """
}

@Suite struct EventDecodingSchemaTests {
    static let valid: [String] = [
        #"{"originalIdentity":"u","requestDate":0}"#,
        #"{"originalIdentity":"u-1","requestDate":1763900000123,"appId":"a","ip":"203.0.113.7","city":"Hangzhou","province":"Zhejiang","country":"CN","ua":"Mozilla/5.0","deviceType":"desktop","systemType":"Windows","browserType":"Chrome","behaviorType":"login","behaviorResult":"success","resourcesType":"app","actionType":"access","loginType":"password","networkZone":"office"}"#,
        #"{"originalIdentity":"u","requestDate":9223372036854,"ip":null,"custom":null,"geo":null,"userAgent":null}"#,
        #"{"originalIdentity":"u","requestDate":5,"custom":{"roles":["a"],"n":{"deep":[1,2.5,null]}},"department":"Finance"}"#,
        #"{"originalIdentity":"u","requestDate":5,"geo":{"latitude":-90,"longitude":180,"accuracyRadius":0,"asn":4294967295,"asOrganization":null,"isAnonymous":true,"isAnonymousVPN":false,"isTorExitNode":null,"isHostingProvider":false}}"#,
        #"{"originalIdentity":"u","requestDate":5,"geo":{}}"#,
        #"{"originalIdentity":"u","requestDate":5,"userAgent":{"browserFamily":"Chrome","browserMajor":"131","browserMinor":null,"osFamily":"Windows","osMajor":"10","deviceFamily":"Other","deviceBrand":null,"deviceModel":null,"deviceClass":"desktop"}}"#,
        #"{"originalIdentity":"用户","requestDate":5,"city":"杭州","x":true,"y":null}"#,
    ]

    static let invalid: [String] = [
        #"{"requestDate":1}"#,
        #"{"originalIdentity":"u"}"#,
        #"{"originalIdentity":"","requestDate":1}"#,
        #"{"originalIdentity":7,"requestDate":1}"#,
        #"{"originalIdentity":"u","requestDate":-1}"#,
        #"{"originalIdentity":"u","requestDate":9223372036855}"#,
        #"{"originalIdentity":"u","requestDate":"1763900000123"}"#,
        #"{"originalIdentity":"u","requestDate":1.5}"#,
        #"{"originalIdentity":"u","requestDate":true}"#,
        #"{"originalIdentity":"u","requestDate":1,"ip":5}"#,
        #"{"originalIdentity":"u","requestDate":1,"loginType":["password"]}"#,
        #"{"originalIdentity":"u","requestDate":1,"networkZone":false}"#,
        #"{"originalIdentity":"u","requestDate":1,"custom":[1]}"#,
        #"{"originalIdentity":"u","requestDate":1,"custom":"x"}"#,
        #"{"originalIdentity":"u","requestDate":1,"geo":"x"}"#,
        #"{"originalIdentity":"u","requestDate":1,"geo":{"latitude":91}}"#,
        #"{"originalIdentity":"u","requestDate":1,"geo":{"longitude":-181}}"#,
        #"{"originalIdentity":"u","requestDate":1,"geo":{"accuracyRadius":-0.5}}"#,
        #"{"originalIdentity":"u","requestDate":1,"geo":{"asn":-1}}"#,
        #"{"originalIdentity":"u","requestDate":1,"geo":{"asn":1.5}}"#,
        #"{"originalIdentity":"u","requestDate":1,"geo":{"isTorExitNode":"yes"}}"#,
        #"{"originalIdentity":"u","requestDate":1,"geo":{"city":"x"}}"#,
        #"{"originalIdentity":"u","requestDate":1,"userAgent":{"browserFamily":"a","osFamily":"b","deviceFamily":"c"}}"#,
        #"{"originalIdentity":"u","requestDate":1,"userAgent":{"browserFamily":"a","osFamily":"b","deviceFamily":"c","deviceClass":"d","x":1}}"#,
        #"{"originalIdentity":"u","requestDate":1,"userAgent":{"browserFamily":null,"osFamily":"b","deviceFamily":"c","deviceClass":"d"}}"#,
        #"[{"originalIdentity":"u","requestDate":1}]"#,
        #""event""#,
    ]

    @Test func decoderAgreesOnTheSamples() {
        for text in Self.valid {
            #expect(decodeEventError(text) == nil, "decoder rejects a valid sample: \(text)")
        }
        for text in Self.invalid {
            #expect(decodeEventError(text) != nil, "decoder accepts an invalid sample: \(text)")
        }
    }

    @Test(.enabled(if: SchemaCheck.available || SchemaCheck.required, "python3 with the jsonschema module is not installed"))
    func schemaAgreesOnTheSamples() throws {
        guard SchemaCheck.available else {
            Issue.record("CI=true but python3 cannot import jsonschema; the schema check must run in CI")
            return
        }
        let samples = Self.valid + Self.invalid
        let input = Data(samples.joined(separator: "\n").utf8)
        let result = try #require(SchemaCheck.run(["python3", "-c", SchemaCheck.validator, SchemaCheck.schemaPath], stdin: input))
        #expect(result.status == 0, "\(result.err)")
        let verdicts = result.out.split(separator: "\n").map { $0 == "1" }
        try #require(verdicts.count == samples.count, "\(result.out) \(result.err)")
        for (i, text) in samples.enumerated() {
            let expected = i < Self.valid.count
            #expect(verdicts[i] == expected, "schema says \(verdicts[i] ? "valid" : "invalid"): \(text)")
        }
    }

    @Test(.enabled(if: SchemaCheck.available || SchemaCheck.required, "python3 with the jsonschema module is not installed"))
    func encodedRandomEventsAreSchemaValid() throws {
        guard SchemaCheck.available else {
            Issue.record("CI=true but python3 cannot import jsonschema")
            return
        }
        var rng = SeededRandom(seed: 7)
        let lines = (0..<200).map { _ in String(decoding: randomEvent(&rng).jsonBytes(), as: UTF8.self) }
        let result = try #require(
            SchemaCheck.run(["python3", "-c", SchemaCheck.validator, SchemaCheck.schemaPath], stdin: Data(lines.joined(separator: "\n").utf8)))
        #expect(result.status == 0, "\(result.err)")
        let verdicts = result.out.split(separator: "\n")
        #expect(verdicts.count == lines.count)
        for (i, v) in verdicts.enumerated() where v != "1" {
            Issue.record("schema rejects an event the encoder wrote: \(lines[i])")
        }
    }

    @Test func schemaListsExactlyTheDecodersFields() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: SchemaCheck.schemaPath))
        guard case .map(let schema) = try JSONParser.parse(Array(data)),
            case .map(let props)? = schema[string: "properties"],
            case .map(let geo)? = props[string: "geo"], case .map(let geoProps)? = geo[string: "properties"],
            case .map(let ua)? = props[string: "userAgent"], case .map(let uaProps)? = ua[string: "properties"]
        else {
            Issue.record("schema does not have the expected shape")
            return
        }
        let names = Set(props.keys.map { JSONWriter.keyText($0) })
        #expect(names == Set(EventField.allCases.map(\.name)))
        #expect(geoProps.keys.map { JSONWriter.keyText($0) } == GeoInfo.fieldNames)
        #expect(uaProps.keys.map { JSONWriter.keyText($0) } == UserAgentInfo.fieldNames)
        for (name, prop) in props.entries {
            guard case .map(let p) = prop, case .string(let d)? = p[string: "description"] else {
                Issue.record("\(JSONWriter.keyText(name)) has no description")
                continue
            }
            #expect(!d.isEmpty)
        }
    }
}
