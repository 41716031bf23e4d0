import FoundationEssentials
import StrataCore
import StrataFormats
import StrataLauncher
import StrataStore
import StrataSystem

/// How a container's last run went, written by its monitor (`state.json`, atomically).
public struct RunState: Codable, Sendable, Equatable {
    public var startedAt: String?
    public var finishedAt: String?
    /// The exit code (128+N for signal N); nil while it runs, or when it never started.
    public var exitCode: Int32?
    /// Why it did not start, if it did not.
    public var error: String?
    /// The monitor's pid while it watches.
    public var monitorPid: Int32?
}

extension Store {
    static let runStateName = "state.json"
    static let logName = "ctr.log"

    /// The container's runtime spec (`config.json`), written when `run` made it; nil for a
    /// container made by `create`.
    public func spec(_ id: String) throws -> RuntimeSpec? {
        let dir = containerPaths(id).root
        if let spec = try RuntimeSpec.read(from: dir) { return spec }
        if pathExists(dir + "/run.json") {
            throw StrataError(.unsupported, "container \(id.prefix(12)) was made by an earlier strata (run.json, no config.json); remove it and run it again")
        }
        return nil
    }

    /// The command a container runs, for `ps` and `inspect`: its spec's args (only those are
    /// decoded), or those of the run.json an earlier strata wrote.
    func command(_ id: String) -> [String]? {
        let dir = containerPaths(id).root
        if let args = (try? RuntimeSpec.readArgs(from: dir)) ?? nil { return args }
        struct Legacy: Decodable { var args: [String] }
        guard let f = try? FDHandle.open(dir + "/run.json", flags: [.readOnly, .noFollow]),
              let bytes = try? f.readAll(limit: 4 << 20, label: "run.json") else { return nil }
        return try? JSONDecoder().decode(Legacy.self, from: Data(bytes)).args
    }

    /// The state the container's monitor last wrote (nil before its first run).
    public func runState(_ id: String) -> RunState? {
        let path = containerPaths(id).root + "/" + Store.runStateName
        guard let f = try? FDHandle.open(path, flags: .readOnly), let bytes = try? f.readAll(limit: 1 << 20, label: path) else { return nil }
        return try? JSONDecoder().decode(RunState.self, from: Data(bytes))
    }

    /// The spare of `state.json`: a record of the same fixed size, with its blocks allocated.
    static let runStateSpareName = "state.next"
    /// The fixed size of a state record (JSON, padded with spaces).
    static let runStateSize = 4096

    /// Makes sure `state.json` and its spare are both full-size records, before a run starts:
    /// every later `writeRunState` then rewrites blocks that exist and needs none of a full
    /// disk. Throws when there is no room (then nothing is started).
    func prepareRunState(_ id: String) throws {
        let dir = try Directory.open(containerPaths(id).root)
        let current = runState(id) ?? RunState()
        for name in [Store.runStateName, Store.runStateSpareName] {
            let size = (try? dir.openFile(Array(name.utf8), flags: .readOnly).stat().size).map { Int($0) }
            if size != Store.runStateSize {
                do { try dir.writeFileAtomically(Array(name.utf8), try Store.stateRecord(current)) } catch let e as StrataError {
                    throw e.context("container \(id.prefix(12)): no room for its exit record")
                }
            }
        }
    }

    /// Records a run's state: written into the spare in place, then swapped with `state.json`
    /// in one rename (the old record becomes the spare). Neither step takes a new block, so an
    /// exit code is recorded on a full disk too. Without a spare (a run before
    /// `prepareRunState`), a new file is written and renamed in.
    func writeRunState(_ id: String, _ state: RunState) throws {
        let dir = try Directory.open(containerPaths(id).root)
        let bytes = try Store.stateRecord(state)
        let spareName = Array(Store.runStateSpareName.utf8), name = Array(Store.runStateName.utf8)
        guard let spare = try? dir.openFile(spareName, flags: .writeOnly), (try? spare.stat().size) == Int64(Store.runStateSize) else {
            try dir.writeFileAtomically(name, bytes)
            return
        }
        try bytes.withUnsafeBytes { try spare.pwriteAll($0, at: 0) }
        if try dir.lstat(name) != nil { try dir.exchange(spareName, name) } else { try dir.rename(spareName, to: name, in: dir) }
    }

    /// A state as a fixed-size record: its JSON padded with spaces (a long error is shortened to fit).
    static func stateRecord(_ state: RunState) throws -> [UInt8] {
        var s = state
        var json = Array(try JSONEncoder().encode(s))
        // Shortened by bytes (escaping may grow each up to six times), then dropped: the exit
        // code must always fit.
        if json.count >= runStateSize, let e = s.error {
            s.error = String(decoding: Array(e.utf8.prefix(512)), as: UTF8.self) + "…"
            json = Array(try JSONEncoder().encode(s))
            if json.count >= runStateSize {
                s.error = "(too long to record)"
                json = Array(try JSONEncoder().encode(s))
            }
        }
        guard json.count < runStateSize else { throw StrataError(.tooLarge, "a run state of \(json.count) bytes does not fit its record") }
        return json + [UInt8](repeating: 0x20, count: runStateSize - 1 - json.count) + [0x0a]
    }

    /// The container's log file.
    public func logPath(_ id: String) -> String { containerPaths(id).root + "/" + Store.logName }
}
