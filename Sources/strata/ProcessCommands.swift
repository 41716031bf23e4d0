import ArgumentParser
import Dispatch
import FoundationEssentials
import StrataCore
import StrataEngine
import StrataLauncher
import StrataSystem

/// `pause`: freezes the processes of running containers (the cgroup freezer).
struct Pause: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Freeze every process of running containers.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Containers.", completion: NameCompletion.containers) var containers: [String]
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            try reportEach(containers, eachResult(containers) { try engine.pause($0) })
        }
    }
}

/// `unpause`: thaws them.
struct Unpause: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unpause", abstract: "Thaw the processes of paused containers.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Containers.", completion: NameCompletion.containers) var containers: [String]
    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            try reportEach(containers, eachResult(containers) { try engine.unpause($0) })
        }
    }
}

/// `rename OLD NEW`.
struct Rename: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rename", abstract: "Give a container another name.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container: name, ID or unique ID prefix.", completion: NameCompletion.containers) var container: String
    @Argument(help: "Its new name.") var newName: String
    func run() throws { try strata.run { try global.openStore().renameContainer(container, to: newName) } }
}

/// `top`: the processes of a running container, as the host's kernel lists them.
struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "top", abstract: "List the processes of a running container.",
        discussion: "UID and PID as the host sees them; TIME is user plus system CPU time.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Container.", completion: NameCompletion.containers) var container: String
    func run() throws {
        try strata.run {
            let list = try global.openEngine().processes(container)
            var rows = [["UID", "PID", "PPID", "STAT", "TIME", "CMD"]]
            for p in list {
                // /proc counts CPU time in USER_HZ ticks, 100 a second on Linux.
                let s = p.cpuTicks / 100
                let time = String(format2(s / 3600)) + ":" + format2(s / 60 % 60) + ":" + format2(s % 60)
                rows.append([String(p.uid), String(p.pid), String(p.ppid), p.state, time, p.command])
            }
            print(Format.table(rows))
        }
    }

    private func format2(_ n: Int64) -> String { n < 10 ? "0\(n)" : String(n) }
}

/// `stats [--no-stream]`: CPU, memory and process counts from each container's cgroups.
struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Show what running containers use: CPU, memory, processes.",
        discussion: "CPU % is over the last second (100% is one CPU); memory as the cgroup charges it, against its limit or the host's memory. Network and block I/O are not shown.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "One reading, then exit.") var noStream = false
    @Flag(name: .long, help: "Full container IDs.") var noTrunc = false
    @Flag(name: .long, help: "JSON: an array of {id, name, cpuPercent, memoryBytes, memoryLimit, memoryPercent, pids}.") var json = false
    @Argument(help: "Containers (default: every running one).", completion: NameCompletion.containers) var containers: [String] = []

    struct Row: Codable {
        var id: String, name: String, cpuPercent: Double, memoryBytes: Int64, memoryLimit: Int64, memoryPercent: Double, pids: Int64
    }

    func run() throws {
        try strata.run {
            let engine = try global.openEngine()
            let hostMemory = Stats.hostMemory()
            while true {
                let names = containers.isEmpty
                    ? try engine.store.containers(all: false).filter { $0.state == .running }.map(\.record.id) : containers
                let records = try names.map { try engine.store.container($0) }
                // Two readings a moment apart: CPU time used over wall time passed.
                let first = records.map { try? engine.usage($0.id) }
                let start = DispatchTime.now().uptimeNanoseconds
                _ = DispatchSemaphore(value: 0).wait(timeout: .now() + (noStream ? 0.5 : 1))
                let wall = Double(DispatchTime.now().uptimeNanoseconds - start)
                var rows: [Row] = []
                for (c, before) in zip(records, first) {
                    guard let before, let now = try? engine.usage(c.id) else {
                        if !containers.isEmpty { throw StrataError(.conflict, "container \(c.name) is not running") }
                        continue
                    }
                    let limit = now.memoryLimit ?? hostMemory
                    rows.append(Row(id: c.id, name: c.name, cpuPercent: Double(now.cpuNanoseconds - before.cpuNanoseconds) / wall * 100,
                                    memoryBytes: now.memory, memoryLimit: limit,
                                    memoryPercent: limit > 0 ? Double(now.memory) / Double(limit) * 100 : 0, pids: now.pids))
                }
                if json { print(try Format.json(rows)) } else {
                    if !noStream && isTerminal(1) { writeStandardOutput(Array("\u{1b}[2J\u{1b}[H".utf8)) }
                    var table = [["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"]]
                    for r in rows {
                        table.append([noTrunc ? r.id : String(r.id.prefix(12)), r.name, percent(r.cpuPercent),
                                      Stats.binary(r.memoryBytes) + " / " + Stats.binary(r.memoryLimit), percent(r.memoryPercent), String(r.pids)])
                    }
                    print(Format.table(table))
                }
                if noStream || json { return }
            }
        }
    }

    private func percent(_ v: Double) -> String {
        let hundredths = Int((v * 100).rounded())
        return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)%"
    }

    /// Memory as Docker's stats prints it: binary units (KiB, MiB, GiB).
    static func binary(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), i = 0
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        let tenths = Int((v * 100).rounded())
        return i == 0 ? "\(n)B" : "\(tenths / 100).\(tenths % 100 < 10 ? "0" : "")\(tenths % 100)\(units[i])"
    }

    /// The host's memory (MemTotal of /proc/meminfo), the limit of a container that has none.
    static func hostMemory() -> Int64 {
        guard let f = try? FDHandle.open("/proc/meminfo", flags: .readOnly), let bytes = try? f.readAll(limit: 1 << 16, label: "meminfo"),
              let line = String(decoding: bytes, as: UTF8.self).split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
              let kib = line.split(separator: " ").dropFirst().first.flatMap({ Int64($0) }) else { return 0 }
        return kib * 1024
    }
}
