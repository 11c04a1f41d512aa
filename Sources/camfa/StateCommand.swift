import ArgumentParser
import CAMFACore
import CAMFAStore
import Foundation

/// `camfa state`: inspect the daemon's state store.
struct StateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state", abstract: "Inspect the daemon's checkpointed state.", subcommands: [StateDumpCommand.self, StateDropCommand.self])
}

/// Prints the stored statistics as JSON in a fixed order, so two dumps of equal state are
/// byte-identical (what the crash and rebalance tests compare). Needs no policy files:
/// the checkpoint metadata carries each window's spec.
struct StateDumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump", abstract: "Print the checkpointed partitions, statistics and user MFA state as JSON.")

    @Option(help: "The state directory (the daemon's stateDir).") var stateDir: String
    @Option(help: "Only this partition number.") var partition: Int32?
    @Option(help: "Only this statistic key or user id.") var key: String?
    @Flag(help: "Leave out each partition's ownership epoch, which differs between runs that reach equal state.")
    var omitEpoch = false

    func run() throws {
        guard FileManager.default.fileExists(atPath: stateDir + "/" + CheckpointStore.fileName) else {
            printError("camfa state dump: no state store in \(stateDir) (\(CheckpointStore.fileName) not found)")
            throw ExitCode(1)
        }
        do {
            let store = try CheckpointStore(directory: stateDir)
            defer { store.close() }
            var w = JSONWriter(reservingCapacity: 1 << 16)
            w.beginObject()
            w.key("partitions")
            w.beginArray()
            for (id, epoch, nextOffset) in try store.partitions() where partition == nil || id.partition == partition {
                guard let c = try store.load(id) else { continue }
                w.beginObject()
                w.field("topic", id.topic)
                w.field("partition", Int64(id.partition))
                w.field("nextOffset", nextOffset)
                if !omitEpoch { w.field("epoch", epoch) }
                do {
                    let rows = try PartitionState.mergedRows(metadata: c.metadata, segments: c.segments, entries: c.entries, users: c.users)
                    try PartitionState.writeDump(metadata: c.metadata, entries: rows.entries, users: rows.users, onlyKey: key, to: &w)
                } catch {
                    printError("camfa state dump: \(id): undecodable checkpoint: \(error)")
                    throw ExitCode(1)
                }
                w.endObject()
            }
            w.endArray()
            w.endObject()
            FileHandle.standardOutput.write(Data(w.bytes + [0x0A]))
        } catch let error as StoreError {
            printError("camfa state dump: \(error)")
            throw ExitCode(1)
        }
    }
}

/// Deletes one partition's checkpoint, the recovery from a corrupt one (the daemon refuses
/// to load it and keeps the partition paused). Stop every daemon using the state directory
/// first; the next owner then rebuilds the partition from its topic per auto.offset.reset
/// (camfa's default `earliest`: an exact rebuild while the topic still holds the history).
struct StateDropCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drop", abstract: "Delete one partition's checkpoint so it is rebuilt from its topic.")

    @Option(help: "The state directory (the daemon's stateDir).") var stateDir: String
    @Option(help: "The input topic of the partition.") var topic: String
    @Option(help: "The partition number.") var partition: Int32

    func run() throws {
        guard FileManager.default.fileExists(atPath: stateDir + "/" + CheckpointStore.fileName) else {
            printError("camfa state drop: no state store in \(stateDir) (\(CheckpointStore.fileName) not found)")
            throw ExitCode(1)
        }
        do {
            let store = try CheckpointStore(directory: stateDir)
            defer { store.close() }
            let id = PartitionID(topic: topic, partition: partition)
            if try store.drop(id) {
                print("dropped the checkpoint of \(id); its next owner rebuilds it from the topic (auto.offset.reset)")
            } else {
                printError("camfa state drop: \(id) has no checkpoint in \(stateDir)")
                throw ExitCode(1)
            }
        } catch let error as StoreError {
            printError("camfa state drop: \(error)")
            throw ExitCode(1)
        }
    }
}
