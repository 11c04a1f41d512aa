import Foundation
import Testing

/// `camfa broker` stops when the end of its stdin pipe closes (whatever started it is gone),
/// so a test run or a script that dies leaves no broker behind.
@Suite struct BrokerBlackBoxTests {
    @Test func aBrokerStopsWhenItsStdinPipeCloses() throws {
        let broker = Process()
        broker.executableURL = try camfaBinary()
        broker.arguments = ["broker", "--brokers", "1", "--partitions", "1"]
        let input = Pipe(), output = Pipe()
        broker.standardInput = input
        broker.standardOutput = output
        broker.standardError = FileHandle.nullDevice
        try broker.run()
        defer { if broker.isRunning { broker.terminate() } }
        var line = Data()
        while true {
            let c = output.fileHandleForReading.readData(ofLength: 1)
            if c.isEmpty || c == Data([0x0A]) { break }
            line += c
        }
        #expect(String(decoding: line, as: UTF8.self).hasPrefix("bootstrap="))
        Thread.sleep(forTimeInterval: 1)
        #expect(broker.isRunning, "it runs while its stdin is open")

        try input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(20)
        while broker.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        #expect(!broker.isRunning, "still running 20 s after its stdin closed")
        if !broker.isRunning { #expect(broker.terminationStatus == 0) }
    }
}
