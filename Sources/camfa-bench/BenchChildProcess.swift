import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A child process of `camfa-bench e2e` (the broker, a daemon under test) whose output
/// lines are handed to a callback as they arrive, on a reader thread per stream, so the
/// receive time of a line is when the child wrote it (to within the pipe's latency).
final class BenchChild: @unchecked Sendable {
    let process = Process()
    let name: String

    /// - Parameters:
    ///   - onLine: called on a reader thread with (stream, line) for each line; stream 1
    ///     is stdout, 2 stderr.
    ///   - log: every line is also appended to this file, for diagnosis after a failure.
    init(name: String, executable: String, arguments: [String], log: String?,
         onLine: @escaping @Sendable (Int, String) -> Void) throws {
        self.name = name
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let logHandle: FileHandle? = log.flatMap { path in
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            return FileHandle(forWritingAtPath: path)
        }
        let logLock = NSLock()
        for (stream, pipe) in [(1, out), (2, err)] {
            let fd = pipe.fileHandleForReading.fileDescriptor
            Thread.detachNewThread {
                var pending = [UInt8]()
                var buffer = [UInt8](repeating: 0, count: 1 << 16)
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n <= 0 { break }
                    pending += buffer[0..<n]
                    while let nl = pending.firstIndex(of: 0x0A) {
                        let line = String(decoding: pending[..<nl], as: UTF8.self)
                        if let logHandle { logLock.withLock { logHandle.write(Data(pending[...nl])) } }
                        pending.removeSubrange(...nl)
                        onLine(stream, line)
                    }
                }
            }
        }
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// SIGTERM, then SIGKILL if it has not exited within `timeout` seconds. Returns the exit status.
    @discardableResult
    func stop(timeout: Double = 15) -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(pid, SIGKILL) } }
}

/// Resident memory of a process, from /proc/PID/status.
struct ProcessMemory {
    /// VmRSS: resident now.
    var rss: Int
    /// VmHWM: the peak resident set size since the process started.
    var peak: Int

    static func of(_ pid: Int32) -> ProcessMemory? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        var rss: Int?, peak: Int?
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count >= 2, let kb = Int(parts[1]) else { continue }
            if parts[0] == "VmRSS:" { rss = kb * 1024 }
            if parts[0] == "VmHWM:" { peak = kb * 1024 }
        }
        guard let rss, let peak else { return nil }
        return ProcessMemory(rss: rss, peak: peak)
    }
}

/// CPU time (user + system, all threads) of a process, from /proc/PID/stat: on a shared
/// machine, events per CPU-second move far less than events per wall-clock second.
enum ProcessCPU {
    static func seconds(_ pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// This process, to the nanosecond.
    static func ownSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// What the report says about the machine: the figures are only comparable within a run.
struct MachineDescription {
    var cores: Int
    var cpuModel: String
    var loadAverage: String
    var memoryBytes: Int

    static func current() -> MachineDescription {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) } ?? "unknown"
        let load = ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "")
            .split(separator: " ").prefix(3).joined(separator: " ")
        return MachineDescription(cores: ProcessInfo.processInfo.activeProcessorCount, cpuModel: model,
                                  loadAverage: load, memoryBytes: Int(ProcessInfo.processInfo.physicalMemory))
    }
}

/// Monotonic time in seconds.
func benchNow() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

/// Wall-clock time in microseconds since the epoch (comparable with Kafka timestamps).
func benchWallMicros() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
}
