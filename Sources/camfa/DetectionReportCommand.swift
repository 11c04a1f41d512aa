import ArgumentParser
import CAMFACore
import CAMFASimulator
import Foundation

/// `camfa detection-report`: how a policy set did on a labelled stream (issue 23).
struct DetectionReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detection-report",
        abstract: "Share of logins challenged per labelled behaviour, and the takeover and legitimate-login figures.")

    @Option(help: "Labels, one JSON object per login: {user, requestDate, behaviour, attack, success}.") var labels: String
    @Option(name: .customLong("mfa-events"), help: "MFA events (one CloudEvent per line, as read from the MFA topic) or camfa replay output.")
    var mfaEvents: String
    @Option(help: "text or json.") var format: String = "text"
    @Option(help: "Where each login's risk score is read for the curve: POLICY.RETURN of a fired policy's explanation.")
    var score: String = "risk.score"

    func run() throws {
        guard format == "text" || format == "json" else {
            printError("--format must be text or json")
            throw ExitCode(2)
        }
        let report: DetectionReport
        do {
            let l = try DetectionReport.labels(jsonLines: try Self.read(labels), file: labels)
            let parts = score.split(separator: ".", maxSplits: 1).map(String.init)
            guard parts.count == 2 else {
                printError("--score must be POLICY.RETURN, e.g. risk.score")
                throw ExitCode(2)
            }
            let d = try DetectionReport.decisions(jsonLines: try Self.read(mfaEvents), file: mfaEvents,
                                                  scorePolicy: parts[0], scoreField: parts[1])
            report = DetectionReport(labels: l, challenged: d.challenged, scores: d.scores)
        } catch let e as DetectionReport.InputError {
            printError(e.description)
            throw ExitCode(1)
        }
        if format == "json" {
            FileHandle.standardOutput.write(Data(JSONWriter.encode(report.json) + [0x0A]))
        } else {
            print(report.text, terminator: "")
        }
    }

    static func read(_ path: String) throws -> [UInt8] {
        guard let d = FileManager.default.contents(atPath: path) else {
            printError("\(path): cannot read")
            throw ExitCode(1)
        }
        return [UInt8](d)
    }
}
